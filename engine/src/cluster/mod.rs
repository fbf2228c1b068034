//! The cluster's sans-IO parts: the relay frames nodes exchange (`frame`) and SWIM membership
//! (`membership`).

pub mod frame;
pub mod membership;
