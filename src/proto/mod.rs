//! The sans-IO node.
#![forbid(unsafe_code)]
