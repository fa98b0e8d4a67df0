//! The provisioner library: everything `provisioner` does, usable from tests.
//!
//! This branch holds only the image module; the real crate root (CLI, AWS resources) lives in
//! main and gains the `pub mod image;` line when merged.

pub mod image;
