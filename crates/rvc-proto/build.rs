//! Compiles the contracts in `proto/` with the `protoc` and well-known types shipped by the
//! `protoc-bin-vendored` crate, so the build does not depend on what the machine has installed.
//! Also writes the file descriptor set that gRPC reflection serves (`FILE_DESCRIPTOR_SET`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "ml.proto",
        "events.proto",
        "catalog.proto",
        "recognition.proto",
    ]
    .map(|f| root.join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // prost-build finds protoc through PROTOC (a build script runs single-threaded).
    std::env::set_var("PROTOC", protoc);
    let mut config = tonic_prost_build::configure();
    if std::env::var_os("CARGO_FEATURE_REFLECTION").is_some() {
        let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
        config = config.file_descriptor_set_path(out_dir.join("rvc_descriptor.bin"));
    }
    config.compile_protos(&files, &[root, well_known])?;
    Ok(())
}
