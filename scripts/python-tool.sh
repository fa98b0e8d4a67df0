# Sourced by scripts/install-deps and scripts/lint-workflows: a Python command-line tool from
# PyPI for whoever runs the script.
#
#   python_tool_on_path COMMAND: puts ~/.local/bin on PATH when a user's earlier install left
#     COMMAND there, so that it counts as installed even when ~/.local/bin is not on PATH.
#   python_tool COMMAND VENV PIP_ARGS...: as root, pip into the system Python; otherwise into
#     the venv ~/.local/VENV (Debian and Ubuntu refuse a user's pip install into the system
#     Python, PEP 668), COMMAND linked into ~/.local/bin, which goes on PATH.

python_tool_on_path() {
  if [ "$(id -u)" -ne 0 ] && [ -x "$HOME/.local/bin/$1" ]; then
    export PATH="$HOME/.local/bin:$PATH"
  fi
}

python_tool() {
  local command=$1 venv=$HOME/.local/$2
  shift 2
  if [ "$(id -u)" -eq 0 ]; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$@"
  else
    python3 -m venv "$venv" &&
      "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" &&
      mkdir -p "$HOME/.local/bin" &&
      ln -sf "$venv/bin/$command" "$HOME/.local/bin/$command" &&
      export PATH="$HOME/.local/bin:$PATH"
  fi
}
