//! Generates the protobuf messages and gRPC stubs for the files in `proto/`.
//!
//! Messages come from `protobuf-codegen` 3 with its pure-Rust parser, so no
//! `protoc` binary is needed. Service stubs come from `grpcio-compiler` 0.13,
//! which takes protobuf-2 descriptors: the descriptor set parsed by
//! `protobuf-parse` 3 is written to bytes and read back as protobuf 2, since
//! both versions share the wire format. The stubs refer only to `grpcio` and
//! the message types, so they compile against grpcio's protobuf-v3 codec.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use protobuf2::Message as _;

const PROTO_DIR: &str = "proto";
/// Proto files, by name inside `PROTO_DIR`.
const PROTO_FILES: [&str; 2] = ["master.proto", "health.proto"];

fn main() {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let paths: Vec<String> = PROTO_FILES
        .iter()
        .map(|name| format!("{PROTO_DIR}/{name}"))
        .collect();
    for path in &paths {
        println!("cargo:rerun-if-changed={path}");
    }

    generate_messages(&out_dir, &paths);
    generate_service_stubs(&out_dir, &paths);
}

fn generate_messages(out_dir: &Path, paths: &[String]) {
    protobuf_codegen::Codegen::new()
        .pure()
        .include(PROTO_DIR)
        .inputs(paths)
        .out_dir(out_dir)
        .run_from_script();
    for name in PROTO_FILES {
        strip_inner_attributes(&out_dir.join(name.replace(".proto", ".rs")));
    }
}

fn generate_service_stubs(out_dir: &Path, paths: &[String]) {
    let descriptor_set = protobuf_parse::Parser::new()
        .pure()
        .include(PROTO_DIR)
        .inputs(paths)
        .file_descriptor_set()
        .expect("the files in proto/ parse");
    let bytes = descriptor_set
        .write_to_bytes()
        .expect("descriptor set serializes");
    let legacy_set = protobuf2::descriptor::FileDescriptorSet::parse_from_bytes(&bytes)
        .expect("protobuf 2 reads a protobuf 3 descriptor set");

    let to_generate: Vec<String> = PROTO_FILES.iter().map(|name| name.to_string()).collect();
    for file in grpcio_compiler::codegen::gen(legacy_set.get_file(), &to_generate) {
        let path = out_dir.join(&file.name);
        fs::write(&path, file.content).expect("OUT_DIR is writable");
        strip_inner_attributes(&path);
    }
}

/// Removes inner attributes and inner doc comments, which `include!` does not
/// accept inside a module body.
fn strip_inner_attributes(path: &Path) {
    let source = fs::read_to_string(path).expect("generated file is readable");
    let kept_lines: Vec<&str> = source
        .lines()
        .filter(|line| !line.starts_with("#![") && !line.starts_with("//!"))
        .collect();
    fs::write(path, kept_lines.join("\n")).expect("generated file is writable");
}
