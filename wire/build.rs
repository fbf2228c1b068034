//! Compiles proto/relay.proto with protox (pure Rust, no protoc binary) and generates the tonic
//! client and server without tonic's transport (we bring hyper on smol ourselves).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/relay.proto");
    let fds = protox::compile(["relay.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_transport(false)
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
