//! smol driver for the `mqtt-session` state machines.
//!
//! Not implemented yet: this crate is an empty placeholder until the smol adapter issue lands.
//! Nothing here pretends to work.
