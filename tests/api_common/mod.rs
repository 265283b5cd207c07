//! Helpers for the membership API tests: a coordinator on 127.0.0.1 with a
//! free port, gRPC clients with call deadlines, and request builders.

// Each test binary compiles this module and uses only some of its helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use grpc_coordinator::proto::health_grpc::HealthClient;
use grpc_coordinator::proto::master::{
    DeregisterWorkerRequest, DeregisterWorkerResponse, EventKind, HeartbeatRequest,
    HeartbeatResponse, ListWorkersRequest, ListWorkersResponse, RegisterWorkerRequest,
    RegisterWorkerResponse, WatchWorkersRequest, WorkerCapabilities, WorkerEvent,
};
use grpc_coordinator::proto::master_grpc::MasterServiceClient;
use grpc_coordinator::{Capabilities, Config, Coordinator, WorkerSpec};
use grpcio::{CallOption, ChannelBuilder, ClientSStreamReceiver, EnvBuilder, RpcStatus};
use protobuf::MessageField;

/// Deadline of every call a test makes, so a server that never replies
/// fails the test instead of hanging it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Returns a configuration for a coordinator on 127.0.0.1 with a free port
/// and the default 60-second heartbeat timeout.
pub fn test_config() -> Config {
    Config {
        host: "127.0.0.1".to_string(),
        port: 0,
        threads: 2,
        shutdown_grace: Duration::from_secs(2),
        ..Config::default()
    }
}

/// Starts a coordinator with `config` and returns it with its bound address.
pub fn start(config: Config) -> (Coordinator, SocketAddr) {
    let mut coordinator = Coordinator::new(config).expect("valid test configuration");
    let address = coordinator.start().expect("coordinator starts");
    (coordinator, address)
}

/// Starts a coordinator with `test_config()` and returns it with its bound address.
pub fn start_default() -> (Coordinator, SocketAddr) {
    start(test_config())
}

/// Returns a channel on its own environment with one completion queue, so
/// every call on it and every task spawned by its client share one thread.
fn channel(address: SocketAddr) -> grpcio::Channel {
    let environment = Arc::new(
        EnvBuilder::new()
            .cq_count(1)
            .name_prefix("test-client")
            .build(),
    );
    ChannelBuilder::new(environment).connect(&address.to_string())
}

/// Returns a `MasterService` client on its own channel.
pub fn master_client(address: SocketAddr) -> MasterServiceClient {
    MasterServiceClient::new(channel(address))
}

/// Returns a `grpc.health.v1.Health` client on its own channel.
pub fn health_client(address: SocketAddr) -> HealthClient {
    HealthClient::new(channel(address))
}

/// Returns call options with `CALL_TIMEOUT` as the deadline.
pub fn call_option() -> CallOption {
    CallOption::default().timeout(CALL_TIMEOUT)
}

/// Returns capabilities with a batch size of 32.
pub fn capabilities(device_type: &str, gpu_enabled: bool, models: &[&str]) -> WorkerCapabilities {
    WorkerCapabilities {
        gpu_enabled,
        max_batch_size: 32,
        device_type: device_type.to_string(),
        supported_models: models.iter().map(|model| model.to_string()).collect(),
        ..Default::default()
    }
}

/// Returns a registration request for `id` at 127.0.0.1:7000.
pub fn register_request(id: &str, capabilities: WorkerCapabilities) -> RegisterWorkerRequest {
    RegisterWorkerRequest {
        worker_id: id.to_string(),
        capabilities: MessageField::some(capabilities),
        host: "127.0.0.1".to_string(),
        port: 7000,
        ..Default::default()
    }
}

/// Returns the library form of a registration, for `Coordinator::register_worker`.
pub fn worker_spec(id: &str, device_type: &str, gpu_enabled: bool, models: &[&str]) -> WorkerSpec {
    WorkerSpec {
        id: id.to_string(),
        host: "127.0.0.1".to_string(),
        port: 7000,
        capabilities: Capabilities {
            gpu_enabled,
            max_batch_size: 32,
            device_type: device_type.to_string(),
            supported_models: models.iter().map(|model| model.to_string()).collect(),
        },
    }
}

/// Registers `id` as a CPU worker over gRPC and checks that it succeeded.
#[track_caller]
pub fn register(client: &MasterServiceClient, id: &str) -> RegisterWorkerResponse {
    register_with(client, id, capabilities("cpu", false, &[]))
}

/// Registers `id` with `capabilities` over gRPC and checks that it succeeded.
#[track_caller]
pub fn register_with(
    client: &MasterServiceClient,
    id: &str,
    capabilities: WorkerCapabilities,
) -> RegisterWorkerResponse {
    let response = client
        .register_worker_opt(&register_request(id, capabilities), call_option())
        .unwrap_or_else(|error| panic!("registering {id} failed: {error}"));
    assert!(response.success, "registering {id}: {}", response.message);
    response
}

/// Sends a heartbeat for `id` carrying `incarnation` (0 for none).
#[track_caller]
pub fn heartbeat(client: &MasterServiceClient, id: &str, incarnation: u64) -> HeartbeatResponse {
    let request = HeartbeatRequest {
        worker_id: id.to_string(),
        incarnation,
        ..Default::default()
    };
    client
        .send_heartbeat_opt(&request, call_option())
        .unwrap_or_else(|error| panic!("heartbeat for {id} failed: {error}"))
}

/// Sends a `DeregisterWorker` call.
pub fn deregister(
    client: &MasterServiceClient,
    id: &str,
    incarnation: u64,
) -> grpcio::Result<DeregisterWorkerResponse> {
    let request = DeregisterWorkerRequest {
        worker_id: id.to_string(),
        incarnation,
        ..Default::default()
    };
    client.deregister_worker_opt(&request, call_option())
}

/// Returns the first page of an unfiltered `ListWorkers` call.
#[track_caller]
pub fn list_first_page(client: &MasterServiceClient) -> ListWorkersResponse {
    client
        .list_workers_opt(&ListWorkersRequest::default(), call_option())
        .expect("ListWorkers succeeds")
}

/// Opens a `WatchWorkers` stream whose call deadline is `deadline` from now.
pub fn watch(
    client: &MasterServiceClient,
    deadline: Duration,
) -> ClientSStreamReceiver<WorkerEvent> {
    client
        .watch_workers_opt(
            &WatchWorkersRequest::default(),
            CallOption::default().timeout(deadline),
        )
        .expect("WatchWorkers starts")
}

/// Blocks until the stream yields its next item or ends.
pub fn next_item<T>(stream: &mut ClientSStreamReceiver<T>) -> Option<grpcio::Result<T>> {
    futures::executor::block_on(stream.next())
}

/// Reads `stream` in a task that `spawn` runs on the client's
/// completion-queue thread, and forwards each item up to the first error to
/// the returned receiver. The receiver disconnects when the stream ends.
///
/// grpcio 0.13's `ClientSStreamReceiver` checks for the call's status before
/// its next message (`ResponseStreamImpl::poll` in src/call/client.rs), so a
/// reader that polls only after both have arrived loses that message. A task on the completion-queue thread is polled as
/// soon as a message arrives, before that thread handles the status.
pub fn forward_stream<T: Send + 'static>(
    mut stream: ClientSStreamReceiver<T>,
    spawn: impl FnOnce(BoxFuture<'static, ()>),
) -> Receiver<grpcio::Result<T>> {
    let (sender, receiver) = mpsc::channel();
    spawn(Box::pin(async move {
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            if sender.send(item).is_err() || failed {
                break;
            }
        }
    }));
    receiver
}

/// Returns the next event, failing the test if the stream failed or ended.
#[track_caller]
pub fn next_event(stream: &mut ClientSStreamReceiver<WorkerEvent>) -> WorkerEvent {
    match next_item(stream) {
        Some(Ok(event)) => event,
        Some(Err(error)) => panic!("watch failed: {error}"),
        None => panic!("watch ended without a status"),
    }
}

/// Reads SNAPSHOT events up to SYNCED and returns them with SYNCED's version.
#[track_caller]
pub fn read_snapshot(stream: &mut ClientSStreamReceiver<WorkerEvent>) -> (Vec<WorkerEvent>, u64) {
    let mut snapshot = Vec::new();
    loop {
        let event = next_event(stream);
        match event.kind.enum_value() {
            Ok(EventKind::SNAPSHOT) => snapshot.push(event),
            Ok(EventKind::SYNCED) => return (snapshot, event.membership_version),
            other => panic!("expected SNAPSHOT or SYNCED, got {other:?}: {event}"),
        }
    }
}

/// Returns the status carried by a failed call, failing the test for any
/// other kind of error.
#[track_caller]
pub fn rpc_status(error: grpcio::Error) -> RpcStatus {
    match error {
        grpcio::Error::RpcFailure(status) => status,
        other => panic!("expected an RPC status, got {other:?}"),
    }
}
