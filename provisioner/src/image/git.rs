//! The image tag: the git commit of the work tree.
//!
//! The tag is the full 40-hex commit id (as CI systems such as GitHub Actions name images),
//! with `-dirty` appended when `git status --porcelain` lists any change, staged, unstaged or
//! untracked (ignored files such as `target/` do not count). The tag is for people; the task
//! definition refers to the image by digest, so a re-pushed `-dirty` tag is harmless.

use std::path::Path;

use tokio::process::Command;

use super::error::ImageError;

/// `<commit>` or `<commit>-dirty` for the git work tree at `dir`.
pub async fn image_tag(dir: &Path) -> Result<String, ImageError> {
    let commit = git(dir, &["rev-parse", "--verify", "HEAD"]).await?;
    let commit = commit.trim();
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImageError::Git {
            dir: dir.to_path_buf(),
            detail: format!("`git rev-parse HEAD` printed `{commit}`, not a commit id"),
        });
    }
    let status = git(dir, &["status", "--porcelain"]).await?;
    Ok(if status.trim().is_empty() {
        commit.to_string()
    } else {
        format!("{commit}-dirty")
    })
}

async fn git(dir: &Path, args: &[&str]) -> Result<String, ImageError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ImageError::Git {
            dir: dir.to_path_buf(),
            detail: format!("cannot run git: {e}"),
        })?;
    if !output.status.success() {
        return Err(ImageError::Git {
            dir: dir.to_path_buf(),
            detail: format!(
                "`git {}` exited with {}: {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
