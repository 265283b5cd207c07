//! The standard `grpc.health.v1.Health` service.
//!
//! The `grpcio-health` crate would be the natural choice, but its release
//! 0.13.0 does not compile against protobuf 3.7.2, the first protobuf release
//! without CVE-2025-53605: its pre-generated code expects a
//! `VERSION_3_2_0` constant and an `Enum` trait without `from_str`. This
//! module implements the same protocol on the same code generation as the
//! rest of the server.

use std::collections::HashMap;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::{SinkExt, StreamExt};
use grpcio::{
    MethodType, RpcContext, RpcStatus, RpcStatusCode, ServerStreamingSink, ServiceBuilder,
    UnarySink, WriteFlags,
};
use parking_lot::Mutex;
use protobuf::EnumOrUnknown;

use crate::codec::{server_method, Decoded};
use crate::in_flight::{CallGuard, InFlight};
use crate::proto::health::health_check_response::ServingStatus;
use crate::proto::health::{HealthCheckRequest, HealthCheckResponse};
use crate::service::{malformed, spawn_reply};
use crate::streams::client_gone;

/// Name under which the coordinator's own service reports its health.
pub const MASTER_SERVICE_NAME: &str = "distributedml.MasterService";

/// Services whose status the coordinator reports: the server as a whole
/// (empty name) and its own service.
const REPORTED_SERVICES: [&str; 2] = ["", MASTER_SERVICE_NAME];

const CHECK: grpcio::Method<Decoded<HealthCheckRequest>, HealthCheckResponse> =
    server_method(MethodType::Unary, "/grpc.health.v1.Health/Check");
const WATCH: grpcio::Method<Decoded<HealthCheckRequest>, HealthCheckResponse> =
    server_method(MethodType::ServerStreaming, "/grpc.health.v1.Health/Watch");

struct HealthWatcher {
    service: String,
    sender: mpsc::UnboundedSender<ServingStatus>,
}

#[derive(Default)]
struct Inner {
    statuses: HashMap<String, ServingStatus>,
    watchers: Vec<HealthWatcher>,
    closed: bool,
}

/// Serving status per service name, with the open health watches.
pub struct HealthState {
    inner: Mutex<Inner>,
}

impl Default for HealthState {
    fn default() -> HealthState {
        HealthState::new()
    }
}

impl HealthState {
    /// Creates the state with the server and `MASTER_SERVICE_NAME` not serving.
    pub fn new() -> HealthState {
        let state = HealthState {
            inner: Mutex::new(Inner::default()),
        };
        state.set_all(ServingStatus::NOT_SERVING);
        state
    }

    /// Sets the status of the server and of `MASTER_SERVICE_NAME`, and
    /// notifies their watchers.
    pub fn set_all(&self, status: ServingStatus) {
        let mut inner = self.inner.lock();
        for service in REPORTED_SERVICES {
            inner.statuses.insert(service.to_string(), status);
        }
        inner.watchers.retain(|watcher| {
            if !REPORTED_SERVICES.contains(&watcher.service.as_str()) {
                return true;
            }
            watcher.sender.unbounded_send(status).is_ok()
        });
    }

    /// Returns the status of a service, or `None` when it is unknown.
    pub fn status(&self, service: &str) -> Option<ServingStatus> {
        self.inner.lock().statuses.get(service).copied()
    }

    /// Ends every health watch: the last step of a stop, after the final
    /// status went out.
    pub fn close_watches(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        inner.watchers.clear();
    }

    fn watch(
        &self,
        service: &str,
    ) -> Option<(ServingStatus, mpsc::UnboundedReceiver<ServingStatus>)> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return None;
        }
        let current = inner
            .statuses
            .get(service)
            .copied()
            .unwrap_or(ServingStatus::SERVICE_UNKNOWN);
        let (sender, receiver) = mpsc::unbounded();
        inner.watchers.push(HealthWatcher {
            service: service.to_string(),
            sender,
        });
        Some((current, receiver))
    }
}

/// Builds the health service around shared health state; every call is
/// counted in `in_flight` until its reply is sent.
pub fn create_health_service(health: Arc<HealthState>, in_flight: InFlight) -> grpcio::Service {
    let (check, watch) = (health.clone(), health);
    let (check_calls, watch_calls) = (in_flight.clone(), in_flight);
    ServiceBuilder::new()
        .add_unary_handler(&CHECK, move |ctx, request, sink| {
            let guard = check_calls.enter();
            health_check(&check, ctx, request, sink, guard)
        })
        .add_server_streaming_handler(&WATCH, move |ctx, request, sink| {
            let guard = watch_calls.enter();
            health_watch(&watch, ctx, request, sink, guard)
        })
        .build()
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: EnumOrUnknown::new(status),
        ..Default::default()
    }
}

fn health_check(
    health: &HealthState,
    ctx: RpcContext<'_>,
    request: Decoded<HealthCheckRequest>,
    sink: UnarySink<HealthCheckResponse>,
    guard: CallGuard,
) {
    let reply = match request.0 {
        Err(error) => Err(malformed::<HealthCheckRequest>(&error)),
        Ok(request) => health
            .status(&request.service)
            .map(response)
            .ok_or_else(|| {
                RpcStatus::with_message(
                    RpcStatusCode::NOT_FOUND,
                    format!("unknown service {:?}", request.service),
                )
            }),
    };
    let send = match reply {
        Ok(response) => sink.success(response),
        Err(status) => sink.fail(status),
    };
    spawn_reply(&ctx, send, guard);
}

fn health_watch(
    health: &HealthState,
    ctx: RpcContext<'_>,
    request: Decoded<HealthCheckRequest>,
    mut sink: ServerStreamingSink<HealthCheckResponse>,
    guard: CallGuard,
) {
    let opened = match request.0 {
        Err(error) => Err(malformed::<HealthCheckRequest>(&error)),
        Ok(request) => health.watch(&request.service).ok_or_else(stopping_status),
    };
    let (current, mut updates) = match opened {
        Ok(opened) => opened,
        Err(status) => {
            spawn_reply(&ctx, sink.fail(status), guard);
            return;
        }
    };

    ctx.spawn(async move {
        let mut status = Some(current);
        while let Some(next) = status {
            if let Err(error) = sink.send((response(next), WriteFlags::default())).await {
                log::debug!("health watch closed by the client: {error}");
                return;
            }
            status = match select(updates.next(), client_gone(&mut sink)).await {
                Either::Left((next, _)) => next,
                Either::Right((error, _)) => {
                    log::debug!("health watch closed by the client: {error}");
                    return;
                }
            };
        }
        let _ = sink.fail(stopping_status()).await;
        drop(guard);
    });
}

fn stopping_status() -> RpcStatus {
    RpcStatus::with_message(
        RpcStatusCode::UNAVAILABLE,
        "the coordinator is stopping; watch again once it serves".to_string(),
    )
}
