//! The generated gRPC code of Weft's node-to-node service (`proto/relay.proto`). Only the
//! production driver uses it: prost types never enter the engine, which sees bytes.

#![forbid(unsafe_code)]

/// `weft.relay`: `Chunk`, `Ack`, `relay_client::RelayClient`, `relay_server::{Relay, RelayServer}`.
pub mod relay {
    #![allow(clippy::all)]
    tonic::include_proto!("weft.relay");
}

/// `collector` (the collector's `common.proto` and `dispatcher.proto`, unchanged):
/// `collective_dispatcher_client::CollectiveDispatcherClient`,
/// `collective_dispatcher_server::{CollectiveDispatcher, CollectiveDispatcherServer}`.
/// `Status.code` carries HTTP numbers: read the raw `code` field, never `code()`.
pub mod collector {
    #![allow(clippy::all)]
    tonic::include_proto!("collector");
}

/// `grpc.health.v1`: the gRPC health checking protocol (`Check`, `Watch`).
pub mod health {
    #![allow(clippy::all)]
    tonic::include_proto!("grpc.health.v1");
}

/// `google.protobuf` well-known types the collector's messages use (`Any`, `Timestamp`).
pub use prost;
pub use prost_types;
