//! SDP offer/answer (stub).
