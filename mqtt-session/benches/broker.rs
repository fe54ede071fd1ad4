//! Broker core benchmarks (placeholder, filled below).
#![allow(missing_docs)]
fn main() {}
