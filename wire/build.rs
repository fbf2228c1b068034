//! Compiles the protos with protox (pure Rust, no protoc binary) and generates tonic clients and
//! servers without tonic's transport (we bring hyper on smol ourselves). `Connect` of the
//! collector would collide with the transport's `Client::connect` constructor: another reason
//! the transport stays off.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["relay.proto"], ["proto"])?;
    let collector = protox::compile(["dispatcher.proto"], ["proto/collector"])?;
    let health = protox::compile(["grpc/health/v1/health.proto"], ["proto"])?;
    for set in [fds, collector, health] {
        tonic_prost_build::configure()
            .build_transport(false)
            .build_client(true)
            .build_server(true)
            .compile_fds(set)?;
    }
    Ok(())
}
