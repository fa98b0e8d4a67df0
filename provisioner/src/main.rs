//! Entry point of the provisioner (placeholder).
fn main() {}
