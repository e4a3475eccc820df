//! Generates the CSI gRPC client and server from the vendored `proto/csi/csi.proto` (CSI spec
//! v1.12.0, Apache-2.0, see `proto/csi/LICENSE`). `protox` parses the proto in pure Rust, so
//! building pvcheck needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/csi/csi.proto");
    let fds = protox::compile(["csi.proto"], ["proto/csi"])?;
    tonic_prost_build::configure()
        .build_client(true)
        // The server side is used only by the fault zoo in harness/tests/fixtures/csi-zoo.
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
