//! The local server's integration tests, in one binary: each module drives the server with the
//! real AWS SDK for Rust over real sockets.

mod basics;
mod converse_surface;
mod converse_validation;
mod faults;
mod invoke;
mod surface_common;
