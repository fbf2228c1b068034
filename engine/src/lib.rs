//! weft-engine: the sans-IO core of Weft. Pure state machines (commands, scheduler, relay,
//! topology, timers, supervisor) and the Luau process runtime; the OS is reached only via a driver.

// Error values are the cold path and carry kind, message, details, context and frames by
// value on purpose (they cross processes as data); boxing them everywhere buys nothing.
#![allow(clippy::result_large_err)]

pub mod boot;
mod calls;
pub mod cluster;
pub mod command;
mod core;
pub mod dispatch;
pub mod drive;
pub mod duration;
pub mod entries;
pub mod env;
pub mod eventbus;
mod exits;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod handlers;
pub mod json;
pub mod lua;
pub mod node;
pub mod pid;
pub mod process;
mod proctable;
pub mod registry;
pub mod relay;
pub mod scheduler;
mod services;
mod shutdown;
pub mod storage_entries;
pub mod supervisor;
pub mod timers;
pub mod topology;
pub mod trace;
pub mod value;
pub mod world;

pub use drive::{drive, turn, woke, Driver, Turn, Wake};
pub use node::{Input, Instant, Node, NodeConfig, Output, Work};
pub use pid::Pid;
pub use value::{ErrorValue, Value};
