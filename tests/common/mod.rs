//! Shared helpers: a coordinator on loopback, a client for it, request
//! builders and assertions on gRPC errors.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grpc_coordinator::proto::master as pb;
use grpc_coordinator::proto::master_grpc::MasterServiceClient;
use grpc_coordinator::{Config, Coordinator, WorkerRecord};
use grpcio::{
    CallOption, ChannelBuilder, EnvBuilder, Environment, GrpcSlice, Marshaller, MessageReader,
    Method, MethodType, RpcStatus, RpcStatusCode,
};
use protobuf::MessageField;

/// Deadline of every call a test makes, so a server that never replies
/// fails the test instead of hanging it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns a configuration that listens on a free loopback port.
pub fn test_config() -> Config {
    Config {
        host: "127.0.0.1".to_string(),
        port: 0,
        threads: 2,
        ..Config::default()
    }
}

/// Starts a coordinator on a free loopback port, with `tweak` applied to the
/// configuration first, and returns it with a client connected to it.
pub fn setup(tweak: impl FnOnce(&mut Config)) -> (Coordinator, MasterServiceClient) {
    let mut config = test_config();
    tweak(&mut config);
    let mut coordinator = Coordinator::new(config).expect("the test configuration is valid");
    let address = coordinator.start().expect("the coordinator starts");
    (coordinator, connect(address))
}

/// Returns a client environment with one completion queue.
pub fn client_environment() -> Arc<Environment> {
    Arc::new(EnvBuilder::new().cq_count(1).build())
}

/// Returns a client for the server at `address`.
pub fn connect(address: SocketAddr) -> MasterServiceClient {
    connect_with(client_environment(), address)
}

/// Returns a client for the server at `address` on a shared environment.
pub fn connect_with(environment: Arc<Environment>, address: SocketAddr) -> MasterServiceClient {
    let channel = ChannelBuilder::new(environment).connect(&address.to_string());
    MasterServiceClient::new(channel)
}

/// Returns the options for one call: a deadline and nothing else.
pub fn call_options() -> CallOption {
    CallOption::default().timeout(CALL_TIMEOUT)
}

/// Returns a valid registration request for `id`.
pub fn register_request(id: &str) -> pb::RegisterWorkerRequest {
    pb::RegisterWorkerRequest {
        worker_id: id.to_string(),
        host: "127.0.0.1".to_string(),
        port: 7000,
        capabilities: MessageField::some(pb::WorkerCapabilities {
            gpu_enabled: true,
            max_batch_size: 32,
            device_type: "cuda".to_string(),
            supported_models: vec!["resnet50".to_string()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Returns a heartbeat request for `id` without a status.
pub fn heartbeat_request(id: &str) -> pb::HeartbeatRequest {
    pb::HeartbeatRequest {
        worker_id: id.to_string(),
        ..Default::default()
    }
}

/// Sends `request` as a registration and returns the result.
pub fn try_register(
    client: &MasterServiceClient,
    request: &pb::RegisterWorkerRequest,
) -> grpcio::Result<pb::RegisterWorkerResponse> {
    client.register_worker_opt(request, call_options())
}

/// Registers `id` with `register_request`, failing the test on an error or
/// on an unsuccessful response.
#[track_caller]
pub fn register(client: &MasterServiceClient, id: &str) -> pb::RegisterWorkerResponse {
    let response = try_register(client, &register_request(id))
        .unwrap_or_else(|error| panic!("registering {id:?} failed: {error}"));
    assert!(response.success, "registering {id:?}: {response:?}");
    response
}

/// Sends `request` as a heartbeat and returns the result.
pub fn try_heartbeat(
    client: &MasterServiceClient,
    request: &pb::HeartbeatRequest,
) -> grpcio::Result<pb::HeartbeatResponse> {
    client.send_heartbeat_opt(request, call_options())
}

/// Sends a heartbeat without a status for `id` and returns whether the
/// server acknowledged it, failing the test when the call fails.
#[track_caller]
pub fn heartbeat_acknowledged(client: &MasterServiceClient, id: &str) -> bool {
    try_heartbeat(client, &heartbeat_request(id))
        .unwrap_or_else(|error| panic!("heartbeat for {id:?} failed: {error}"))
        .acknowledged
}

/// Returns the ids of `workers`, in their order.
pub fn worker_ids(workers: &[WorkerRecord]) -> Vec<String> {
    workers.iter().map(|record| record.id.to_string()).collect()
}

/// Returns the stored record of `id`, if any.
pub fn find_worker(coordinator: &Coordinator, id: &str) -> Option<WorkerRecord> {
    coordinator
        .workers()
        .into_iter()
        .find(|record| &*record.id == id)
}

/// Returns the status of a failed call, failing the test with `context`
/// when the call succeeded or failed without a status.
#[track_caller]
pub fn rpc_status<T: std::fmt::Debug>(result: grpcio::Result<T>, context: &str) -> RpcStatus {
    match result {
        Err(grpcio::Error::RpcFailure(status)) => status,
        other => panic!("{context}: expected a failed call with a status, got {other:?}"),
    }
}

/// Asserts that `result` is a failed call with status `code` whose message
/// contains `fragment`, and returns the message.
#[track_caller]
pub fn assert_rpc_error<T: std::fmt::Debug>(
    result: grpcio::Result<T>,
    code: RpcStatusCode,
    fragment: &str,
) -> String {
    let status = rpc_status(result, &format!("expected {code:?}"));
    assert_eq!(
        status.code(),
        code,
        "unexpected status code; message: {:?}",
        status.message()
    );
    assert!(
        status.message().contains(fragment),
        "status message {:?} does not contain {fragment:?}",
        status.message()
    );
    status.message().to_string()
}

/// Asserts that `result` is a failed call with status `code`, whatever its message.
#[track_caller]
pub fn assert_rpc_code<T: std::fmt::Debug>(result: grpcio::Result<T>, code: RpcStatusCode) {
    assert_rpc_error(result, code, "");
}

fn serialize_bytes(bytes: &Vec<u8>, buffer: &mut GrpcSlice) -> grpcio::Result<()> {
    *buffer = GrpcSlice::from(bytes.as_slice());
    Ok(())
}

fn deserialize_bytes(mut reader: MessageReader) -> grpcio::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|error| grpcio::Error::Codec(Box::new(error)))?;
    Ok(bytes)
}

/// Returns a unary method named `name` that sends and receives raw bytes,
/// so a test can call methods the generated client lacks or send bytes
/// that are not a valid message.
pub const fn raw_method(name: &'static str) -> Method<Vec<u8>, Vec<u8>> {
    Method {
        ty: MethodType::Unary,
        name,
        req_mar: Marshaller {
            ser: serialize_bytes,
            de: deserialize_bytes,
        },
        resp_mar: Marshaller {
            ser: serialize_bytes,
            de: deserialize_bytes,
        },
    }
}

/// Sends `bytes` to the unary `method` and returns the raw response bytes.
pub fn raw_call(
    client: &MasterServiceClient,
    method: &Method<Vec<u8>, Vec<u8>>,
    bytes: Vec<u8>,
) -> grpcio::Result<Vec<u8>> {
    client.client.unary_call(method, &bytes, call_options())
}

/// Polls `condition` every 10 ms until it is true or `limit` has passed, and
/// returns whether it became true.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
