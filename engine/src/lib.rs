//! weft-engine: the sans-IO core of Weft. Pure state machines (commands, scheduler, relay,
//! topology, timers, supervisor) and the Luau process runtime; the OS is reached only via a driver.

pub mod boot;
pub mod command;
pub mod duration;
pub mod entries;
pub mod env;
pub mod eventbus;
pub mod fuzzing;
pub mod json;
pub mod lua;
pub mod node;
pub mod pid;
pub mod process;
pub mod registry;
pub mod relay;
pub mod scheduler;
pub mod storage;
pub mod supervisor;
pub mod timers;
pub mod topology;
pub mod trace;
pub mod value;

pub use node::{Input, Instant, Node, NodeConfig, Output, Work};
pub use pid::Pid;
pub use value::{ErrorValue, Value};
