#![forbid(unsafe_code)]
//! Simulated Asterisk (work in progress).
