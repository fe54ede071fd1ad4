//! Sans-IO MQTT client and server session state machines.
//!
//! Not implemented yet: this crate is an empty placeholder until the client session issue
//! lands. Nothing here pretends to work.

#![no_std]
#![forbid(unsafe_code)]
