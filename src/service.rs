//! The `distributedml.MasterService` handlers: decode, validate, one
//! membership call, reply.

use std::sync::Arc;

use grpcio::{MethodType, RpcContext, RpcStatus, RpcStatusCode, ServiceBuilder, UnarySink};
use protobuf::Message;

use crate::codec::{server_method, Decoded};
use crate::convert::{spec_from_request, status_from_proto};
use crate::error::Error;
use crate::log_limit::LogLimit;
use crate::membership::Membership;
use crate::proto::master as pb;
use crate::registry::HeartbeatOutcome;

const REGISTER_WORKER: grpcio::Method<
    Decoded<pb::RegisterWorkerRequest>,
    pb::RegisterWorkerResponse,
> = server_method(
    MethodType::Unary,
    "/distributedml.MasterService/RegisterWorker",
);
const SEND_HEARTBEAT: grpcio::Method<Decoded<pb::HeartbeatRequest>, pb::HeartbeatResponse> =
    server_method(
        MethodType::Unary,
        "/distributedml.MasterService/SendHeartbeat",
    );

/// Rejected requests are logged at most once a second, because a broken or
/// hostile client can send them as fast as the network allows.
static REJECTION_LOG: LogLimit = LogLimit::new();

/// Builds the gRPC service around shared membership.
pub fn create_master_service(membership: Arc<Membership>) -> grpcio::Service {
    let register = membership.clone();
    let heartbeat = membership;
    ServiceBuilder::new()
        .add_unary_handler(&REGISTER_WORKER, move |ctx, request, sink| {
            reply(ctx, sink, request, |request| {
                register_worker(&register, request)
            })
        })
        .add_unary_handler(&SEND_HEARTBEAT, move |ctx, request, sink| {
            reply(ctx, sink, request, |request| {
                send_heartbeat(&heartbeat, request)
            })
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
        ..Default::default()
    })
}

fn send_heartbeat(
    membership: &Membership,
    request: pb::HeartbeatRequest,
) -> Result<pb::HeartbeatResponse, Error> {
    let status = status_from_proto(request.status);
    let outcome = membership.heartbeat(&request.worker_id, 0, status)?;
    Ok(pb::HeartbeatResponse {
        acknowledged: outcome == HeartbeatOutcome::Acknowledged,
        ..Default::default()
    })
}

/// Runs `handle` on a decoded request and sends its result or error status.
fn reply<Req: Message, Resp: Send + 'static>(
    ctx: RpcContext<'_>,
    sink: UnarySink<Resp>,
    request: Decoded<Req>,
    handle: impl FnOnce(Req) -> Result<Resp, Error>,
) {
    let result = match request.0 {
        Ok(request) => handle(request).map_err(|error| status_for(&error)),
        Err(error) => Err(malformed::<Req>(&error)),
    };
    let method = String::from_utf8_lossy(ctx.method()).into_owned();
    let send = match result {
        Ok(response) => sink.success(response),
        Err(status) => {
            if let Some(suppressed) = REJECTION_LOG.admit() {
                log::warn!(
                    "{method} rejected: {} ({suppressed} similar lines suppressed)",
                    status.message()
                );
            }
            sink.fail(status)
        }
    };
    ctx.spawn(async move {
        if let Err(error) = send.await {
            log::debug!("{method}: reply not delivered: {error}");
        }
    });
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
