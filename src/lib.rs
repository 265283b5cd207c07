//! A coordinator for distributed machine-learning training.
//!
//! Workers register over gRPC (`distributedml.MasterService`), send
//! heartbeats, and are evicted when they fall silent. `Coordinator` runs the
//! server; `Registry` contains the membership logic free of gRPC types;
//! `WorkerSession` is the worker side of the protocol.

mod backoff;
pub mod cli;
pub mod client;
mod codec;
pub mod config;
mod convert;
pub mod coordinator;
pub mod error;
pub mod events;
pub mod health;
mod in_flight;
mod incarnation;
mod log_limit;
pub mod membership;
mod monitor;
pub mod paging;
mod periodic;
pub mod proto;
pub mod registry;
mod service;
mod streams;
pub mod validate;
pub mod wait;
pub mod watch;
pub mod worker;

pub use client::{WorkerOptions, WorkerSession};
pub use config::Config;
pub use coordinator::Coordinator;
pub use error::Error;
pub use registry::{Registry, WorkerRecord};
pub use worker::{Capabilities, WorkerSpec, WorkerStatus};
