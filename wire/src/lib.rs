//! The generated gRPC code of Weft's node-to-node service (`proto/relay.proto`). Only the
//! production driver uses it: prost types never enter the engine, which sees bytes.

#![forbid(unsafe_code)]

/// `weft.relay`: `Chunk`, `Ack`, `relay_client::RelayClient`, `relay_server::{Relay, RelayServer}`.
pub mod relay {
    #![allow(clippy::all)]
    tonic::include_proto!("weft.relay");
}
