//! The collector's dispatch protos: arbitrary bytes decoded as `DispatchRequest`,
//! `ServeRequest`, `ConnectRequest` and peer replies, converted into engine types by the driver's
//! `convert.rs` and run through a sans-IO `Collector`. Both files are included by path (the
//! driver is a binary crate with an I/O stack the fuzz build does not need).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../drivers/src/cluster/dispatch/convert.rs"]
#[allow(dead_code)]
mod convert;

#[path = "../../drivers/src/cluster/dispatch/fuzz.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::one(data));
