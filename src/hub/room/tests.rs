//! The room alone: frames in, outputs out, no association anywhere.
