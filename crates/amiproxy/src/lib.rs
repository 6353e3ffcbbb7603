#![forbid(unsafe_code)]
//! amiproxy core (work in progress).
