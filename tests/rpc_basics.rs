//! RegisterWorker and SendHeartbeat over gRPC: replies, stored state and error codes.

mod common;

use common::*;
use grpc_coordinator::proto::master as pb;
use grpc_coordinator::{Capabilities, WorkerStatus};
use grpcio::RpcStatusCode;
use protobuf::{Message, MessageField};

const REGISTER_WORKER: grpcio::Method<Vec<u8>, Vec<u8>> =
    raw_method("/distributedml.MasterService/RegisterWorker");
const REQUEST_JOB: grpcio::Method<Vec<u8>, Vec<u8>> =
    raw_method("/distributedml.MasterService/RequestJob");
const COMPLETE_JOB: grpcio::Method<Vec<u8>, Vec<u8>> =
    raw_method("/distributedml.MasterService/CompleteJob");

#[test]
fn register_then_heartbeat_stores_status() {
    let (coordinator, client) = setup(|_| {});

    let response = register(&client, "worker-1");
    assert!(response.success);
    assert_eq!(response.assigned_worker_id, "worker-1");
    assert!(
        response.message.contains("worker-1"),
        "message {:?} does not name the worker",
        response.message
    );

    let heartbeat = pb::HeartbeatRequest {
        worker_id: "worker-1".to_string(),
        status: MessageField::some(pb::WorkerStatus {
            current_job_id: "job-7".to_string(),
            cpu_usage: 0.5,
            memory_usage: 0.25,
            gpu_usage: 0.75,
            completed_batches: 12,
            ..Default::default()
        }),
        timestamp: 1_700_000_000,
        ..Default::default()
    };
    let reply = try_heartbeat(&client, &heartbeat).expect("heartbeat succeeds");
    assert!(reply.acknowledged);

    let record = find_worker(&coordinator, "worker-1").expect("worker-1 is stored");
    let expected = WorkerStatus {
        current_job_id: "job-7".to_string(),
        cpu_usage: 0.5,
        memory_usage: 0.25,
        gpu_usage: 0.75,
        completed_batches: 12,
    };
    assert_eq!(record.last_status, Some(expected));
    assert!(record.last_heartbeat >= record.registered_at);
}

#[test]
fn register_stores_address_and_capabilities() {
    let (coordinator, client) = setup(|_| {});

    register(&client, "worker-1");

    let workers = coordinator.workers();
    assert_eq!(worker_ids(&workers), ["worker-1"]);
    let record = &workers[0];
    assert_eq!(record.host, "127.0.0.1");
    assert_eq!(record.port, 7000);
    let expected = Capabilities {
        gpu_enabled: true,
        max_batch_size: 32,
        device_type: "cuda".to_string(),
        supported_models: vec!["resnet50".to_string()],
    };
    assert_eq!(record.capabilities, expected);
    assert_eq!(record.last_status, None);
}

#[test]
fn heartbeat_unknown_worker_not_acknowledged() {
    let (coordinator, client) = setup(|_| {});

    let reply = try_heartbeat(&client, &heartbeat_request("never-registered"));

    let reply = reply.expect("a heartbeat from an unknown id is not an error");
    assert!(!reply.acknowledged);
    assert!(coordinator.workers().is_empty());
}

#[test]
fn reregistration_replaces_record() {
    let (coordinator, client) = setup(|_| {});
    register(&client, "worker-1");

    let mut request = register_request("worker-1");
    request.host = "127.0.0.2".to_string();
    request.port = 8000;
    request.capabilities = MessageField::some(pb::WorkerCapabilities {
        gpu_enabled: false,
        max_batch_size: 8,
        device_type: "cpu".to_string(),
        supported_models: vec!["bert".to_string(), "gpt2".to_string()],
        ..Default::default()
    });
    let response = try_register(&client, &request).expect("re-registration succeeds");
    assert!(response.success);
    assert_eq!(response.assigned_worker_id, "worker-1");

    let workers = coordinator.workers();
    assert_eq!(worker_ids(&workers), ["worker-1"]);
    let record = &workers[0];
    assert_eq!(record.host, "127.0.0.2");
    assert_eq!(record.port, 8000);
    let expected = Capabilities {
        gpu_enabled: false,
        max_batch_size: 8,
        device_type: "cpu".to_string(),
        supported_models: vec!["bert".to_string(), "gpt2".to_string()],
    };
    assert_eq!(record.capabilities, expected);
    assert!(heartbeat_acknowledged(&client, "worker-1"));
}

#[test]
fn heartbeat_empty_id_invalid_argument() {
    let (_coordinator, client) = setup(|_| {});

    let result = try_heartbeat(&client, &heartbeat_request(""));

    assert_rpc_error(result, RpcStatusCode::INVALID_ARGUMENT, "worker_id");
}

#[test]
fn unknown_methods_unimplemented() {
    let (_coordinator, client) = setup(|_| {});

    for method in [&REQUEST_JOB, &COMPLETE_JOB] {
        let result = raw_call(&client, method, Vec::new());
        assert_rpc_code(result, RpcStatusCode::UNIMPLEMENTED);
    }

    // The server keeps serving the methods it has.
    register(&client, "worker-1");
}

#[test]
fn raw_valid_registration_accepted() {
    let (coordinator, client) = setup(|_| {});
    let bytes = register_request("worker-1")
        .write_to_bytes()
        .expect("request serializes");

    let reply = raw_call(&client, &REGISTER_WORKER, bytes).expect("registration succeeds");

    let response = pb::RegisterWorkerResponse::parse_from_bytes(&reply).expect("reply parses");
    assert!(response.success);
    assert_eq!(worker_ids(&coordinator.workers()), ["worker-1"]);
}

#[test]
fn malformed_request_invalid_argument() {
    let (coordinator, client) = setup(|_| {});

    let result = raw_call(&client, &REGISTER_WORKER, vec![0xff, 0xff, 0xff]);

    let message = assert_rpc_error(
        result,
        RpcStatusCode::INVALID_ARGUMENT,
        "RegisterWorkerRequest",
    );
    assert!(
        message.contains("malformed"),
        "message {message:?} does not call the request malformed"
    );
    assert!(coordinator.workers().is_empty());

    // The server keeps serving after the bad request.
    register(&client, "worker-1");
    assert!(heartbeat_acknowledged(&client, "worker-1"));
    assert_eq!(worker_ids(&coordinator.workers()), ["worker-1"]);
}

#[test]
fn deeply_nested_request_rejected() {
    let (coordinator, client) = setup(|_| {});

    // 60,000 nested starts of an unknown group (field 3, wire type 3). A
    // parser without a recursion limit overflows its stack on this input;
    // protobuf 3.7.2 stops at its limit and reports an error.
    let nested = vec![0x1b; 60_000];
    let result = raw_call(&client, &REGISTER_WORKER, nested);

    assert_rpc_error(result, RpcStatusCode::INVALID_ARGUMENT, "recursion limit");
    register(&client, "worker-1");
    assert!(heartbeat_acknowledged(&client, "worker-1"));
    assert_eq!(worker_ids(&coordinator.workers()), ["worker-1"]);
}

#[test]
fn oversized_request_rejected() {
    let (coordinator, client) = setup(|_| {});
    let mut request = register_request("worker-big");
    request.host = "h".repeat(70_000);

    let result = client.register_worker_opt(&request, call_options());

    assert_rpc_code(result, RpcStatusCode::RESOURCE_EXHAUSTED);
    assert!(coordinator.workers().is_empty());
    register(&client, "worker-1");
    assert_eq!(worker_ids(&coordinator.workers()), ["worker-1"]);
}
