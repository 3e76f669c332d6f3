//! The `dcengine` command.
fn main() {}
