//! Generated protobuf messages and gRPC stubs for `proto/master.proto`.

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    nonstandard_style,
    unused,
    unused_qualifications
)]
pub mod master {
    include!(concat!(env!("OUT_DIR"), "/master.rs"));
}

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    nonstandard_style,
    unused,
    unused_qualifications
)]
pub mod master_grpc {
    include!(concat!(env!("OUT_DIR"), "/master_grpc.rs"));
}
