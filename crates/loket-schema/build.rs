//! Rebuilds the crate when a file is added to or removed from the repository's `schemas/`
//! directory (`include_dir!` alone only notices changes to files it already embedded).

fn main() {
    println!("cargo:rerun-if-changed=../../schemas");
    println!("cargo:rerun-if-changed=build.rs");
}
