//! Generated protobuf messages and gRPC stubs for the files in `proto/`.

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

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    nonstandard_style,
    unused,
    unused_qualifications
)]
pub mod health {
    include!(concat!(env!("OUT_DIR"), "/health.rs"));
}

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    nonstandard_style,
    unused,
    unused_qualifications
)]
pub mod health_grpc {
    include!(concat!(env!("OUT_DIR"), "/health_grpc.rs"));
}
