//! Deterministic network harness.
#![forbid(unsafe_code)]
