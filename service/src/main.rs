//! Entry point of the timing service (placeholder until the service lands).
fn main() {}
