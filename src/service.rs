//! The `distributedml.MasterService` unary handlers: decode, validate, one
//! membership call, reply. The streaming and waiting methods live in
//! `streams.rs`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use grpcio::{MethodType, RpcContext, RpcStatus, RpcStatusCode, ServiceBuilder, UnarySink};
use protobuf::Message;

use crate::codec::{server_method, Decoded};
use crate::convert::{filter_from_proto, spec_from_request, status_from_proto, worker_info};
use crate::error::Error;
use crate::in_flight::{CallGuard, InFlight};
use crate::log_limit::LogLimit;
use crate::membership::Membership;
use crate::paging::{decode_token, effective_page_size, encode_token};
use crate::proto::master as pb;
use crate::registry::HeartbeatOutcome;
use crate::streams::{wait_for_workers, watch_workers};

type ServerMethod<Req, Resp> = grpcio::Method<Decoded<Req>, Resp>;

const REGISTER_WORKER: ServerMethod<pb::RegisterWorkerRequest, pb::RegisterWorkerResponse> =
    server_method(
        MethodType::Unary,
        "/distributedml.MasterService/RegisterWorker",
    );
const SEND_HEARTBEAT: ServerMethod<pb::HeartbeatRequest, pb::HeartbeatResponse> = server_method(
    MethodType::Unary,
    "/distributedml.MasterService/SendHeartbeat",
);
const DEREGISTER_WORKER: ServerMethod<pb::DeregisterWorkerRequest, pb::DeregisterWorkerResponse> =
    server_method(
        MethodType::Unary,
        "/distributedml.MasterService/DeregisterWorker",
    );
const LIST_WORKERS: ServerMethod<pb::ListWorkersRequest, pb::ListWorkersResponse> = server_method(
    MethodType::Unary,
    "/distributedml.MasterService/ListWorkers",
);
const WATCH_WORKERS: ServerMethod<pb::WatchWorkersRequest, pb::WorkerEvent> = server_method(
    MethodType::ServerStreaming,
    "/distributedml.MasterService/WatchWorkers",
);
const WAIT_FOR_WORKERS: ServerMethod<pb::WaitForWorkersRequest, pb::WaitForWorkersResponse> =
    server_method(
        MethodType::Unary,
        "/distributedml.MasterService/WaitForWorkers",
    );

/// Rejected requests are logged at most once a second, because a broken or
/// hostile client can send them as fast as the network allows.
static REJECTION_LOG: LogLimit = LogLimit::new();

/// Builds the gRPC service around shared membership; every call is
/// counted in `in_flight` until its reply is sent.
pub fn create_master_service(membership: Arc<Membership>, in_flight: InFlight) -> grpcio::Service {
    let (register, heartbeat, deregister) =
        (membership.clone(), membership.clone(), membership.clone());
    let (list, watch, wait) = (membership.clone(), membership.clone(), membership);
    let (register_calls, heartbeat_calls, deregister_calls) =
        (in_flight.clone(), in_flight.clone(), in_flight.clone());
    let (list_calls, watch_calls, wait_calls) = (in_flight.clone(), in_flight.clone(), in_flight);
    ServiceBuilder::new()
        .add_unary_handler(&REGISTER_WORKER, move |ctx, request, sink| {
            let guard = register_calls.enter();
            reply(ctx, sink, request, guard, |request| {
                register_worker(&register, request)
            })
        })
        .add_unary_handler(&SEND_HEARTBEAT, move |ctx, request, sink| {
            let guard = heartbeat_calls.enter();
            reply(ctx, sink, request, guard, |request| {
                send_heartbeat(&heartbeat, request)
            })
        })
        .add_unary_handler(&DEREGISTER_WORKER, move |ctx, request, sink| {
            let guard = deregister_calls.enter();
            reply(ctx, sink, request, guard, |request| {
                deregister_worker(&deregister, request)
            })
        })
        .add_unary_handler(&LIST_WORKERS, move |ctx, request, sink| {
            let guard = list_calls.enter();
            reply(ctx, sink, request, guard, |request| {
                list_workers(&list, request)
            })
        })
        .add_server_streaming_handler(&WATCH_WORKERS, move |ctx, request, sink| {
            let guard = watch_calls.enter();
            watch_workers(&watch, ctx, request, sink, guard)
        })
        .add_unary_handler(&WAIT_FOR_WORKERS, move |ctx, request, sink| {
            let guard = wait_calls.enter();
            wait_for_workers(&wait, ctx, request, sink, guard)
        })
        .build()
}

fn register_worker(
    membership: &Membership,
    request: pb::RegisterWorkerRequest,
) -> Result<pb::RegisterWorkerResponse, Error> {
    let registration = membership.register(spec_from_request(request))?;
    let id = registration.record.id.to_string();
    Ok(pb::RegisterWorkerResponse {
        success: true,
        message: format!("worker {id} registered"),
        assigned_worker_id: id,
        incarnation: registration.record.incarnation,
        coordinator_incarnation: membership.coordinator_incarnation(),
        ..Default::default()
    })
}

fn send_heartbeat(
    membership: &Membership,
    request: pb::HeartbeatRequest,
) -> Result<pb::HeartbeatResponse, Error> {
    let status = status_from_proto(request.status);
    let outcome = membership.heartbeat(&request.worker_id, request.incarnation, status)?;
    Ok(pb::HeartbeatResponse {
        acknowledged: outcome == HeartbeatOutcome::Acknowledged,
        coordinator_incarnation: membership.coordinator_incarnation(),
        ..Default::default()
    })
}

fn deregister_worker(
    membership: &Membership,
    request: pb::DeregisterWorkerRequest,
) -> Result<pb::DeregisterWorkerResponse, Error> {
    let removal = membership.deregister(&request.worker_id, request.incarnation)?;
    Ok(pb::DeregisterWorkerResponse {
        removed: removal.is_some(),
        ..Default::default()
    })
}

fn list_workers(
    membership: &Membership,
    request: pb::ListWorkersRequest,
) -> Result<pb::ListWorkersResponse, Error> {
    let filter = filter_from_proto(request.device_type, request.gpu, request.supported_model)?;
    let after = decode_token(&filter, &request.page_token)?;
    let page_size = effective_page_size(request.page_size);

    let (page, membership_version) = membership.page(&filter, after.as_deref(), page_size);

    let now = Instant::now();
    Ok(pb::ListWorkersResponse {
        workers: page
            .workers
            .iter()
            .map(|record| worker_info(record, now))
            .collect(),
        next_page_token: page
            .last_id
            .map(|id| encode_token(&filter, &id))
            .unwrap_or_default(),
        total_count: page.total_count,
        membership_version,
        ..Default::default()
    })
}

/// Runs `handle` on a decoded request and sends its result or error status.
fn reply<Req: Message, Resp: Send + 'static>(
    ctx: RpcContext<'_>,
    sink: UnarySink<Resp>,
    request: Decoded<Req>,
    guard: CallGuard,
    handle: impl FnOnce(Req) -> Result<Resp, Error>,
) {
    let result = match request.0 {
        Ok(request) => handle(request).map_err(|error| status_for(&error)),
        Err(error) => Err(malformed::<Req>(&error)),
    };
    let send = match result {
        Ok(response) => sink.success(response),
        Err(status) => {
            log_rejection(&ctx, &status);
            sink.fail(status)
        }
    };
    spawn_reply(&ctx, send, guard);
}

/// Sends a reply or final status from the call's completion-queue thread,
/// keeping the call counted as in flight until it is sent.
pub fn spawn_reply(
    ctx: &RpcContext<'_>,
    reply: impl Future<Output = grpcio::Result<()>> + Send + 'static,
    guard: CallGuard,
) {
    ctx.spawn(async move {
        if let Err(error) = reply.await {
            log::debug!("reply not delivered: {error}");
        }
        drop(guard);
    });
}

/// Logs a rejected request at warn, at most once a second.
pub fn log_rejection(ctx: &RpcContext<'_>, status: &RpcStatus) {
    if let Some(suppressed) = REJECTION_LOG.admit() {
        log::warn!(
            "{} rejected: {} ({suppressed} similar lines suppressed)",
            String::from_utf8_lossy(ctx.method()),
            status.message()
        );
    }
}

/// Returns the status for a request whose bytes did not parse.
pub fn malformed<Req: Message>(error: &protobuf::Error) -> RpcStatus {
    RpcStatus::with_message(
        RpcStatusCode::INVALID_ARGUMENT,
        format!("malformed {}: {error}", Req::NAME),
    )
}

/// Returns the gRPC status that reports `error` to a caller.
pub fn status_for(error: &Error) -> RpcStatus {
    let code = match error {
        Error::InvalidArgument { .. } => RpcStatusCode::INVALID_ARGUMENT,
        Error::RegistryFull { .. } => RpcStatusCode::RESOURCE_EXHAUSTED,
        Error::NotServing => RpcStatusCode::UNAVAILABLE,
        Error::Bind { .. } | Error::Grpc(_) | Error::Config(_) | Error::AlreadyStarted { .. } => {
            RpcStatusCode::INTERNAL
        }
    };
    RpcStatus::with_message(code, error.to_string())
}
