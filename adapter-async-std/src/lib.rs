//! async-std driver for the `mqtt-session` state machines.
//!
//! Not implemented yet: this crate is an empty placeholder until the async-std adapter issue
//! lands. Nothing here pretends to work.
