//! A coordinator for distributed machine-learning training.
//!
//! Workers register over gRPC (`distributedml.MasterService`), send
//! heartbeats, and are evicted when they fall silent. `Coordinator` runs the
//! server; `Registry` holds the membership logic free of gRPC types.

pub mod cli;
mod codec;
pub mod config;
mod convert;
pub mod coordinator;
pub mod error;
mod incarnation;
mod log_limit;
pub mod membership;
mod monitor;
pub mod proto;
pub mod registry;
mod service;
pub mod validate;
pub mod worker;

pub use config::Config;
pub use coordinator::Coordinator;
pub use error::Error;
pub use registry::{Registry, WorkerRecord};
pub use worker::{Capabilities, WorkerSpec, WorkerStatus};
