//! Input validation over gRPC: every rule rejects with INVALID_ARGUMENT and stores nothing.

mod common;

use common::*;
use grpc_coordinator::proto::master as pb;
use grpc_coordinator::proto::master_grpc::MasterServiceClient;
use grpc_coordinator::Coordinator;
use grpcio::RpcStatusCode;
use protobuf::MessageField;

/// One registration that breaks one rule.
struct RejectedRegistration {
    name: &'static str,
    request: pb::RegisterWorkerRequest,
    /// Field the error message must name.
    field: &'static str,
    /// Text the error message must quote: the value or its start, as
    /// Rust's `Debug` escapes it.
    quoted: String,
}

fn registration(
    id: &str,
    change: impl FnOnce(&mut pb::RegisterWorkerRequest),
) -> pb::RegisterWorkerRequest {
    let mut request = register_request(id);
    change(&mut request);
    request
}

fn capabilities(
    request: &mut pb::RegisterWorkerRequest,
    change: impl FnOnce(&mut pb::WorkerCapabilities),
) {
    let mut capabilities = request.capabilities.take().unwrap_or_default();
    change(&mut capabilities);
    request.capabilities = MessageField::some(capabilities);
}

/// Returns the first `chars` characters of `value` escaped as `{:?}` escapes them.
fn quoted_prefix(value: &str, chars: usize) -> String {
    let prefix: String = value.chars().take(chars).collect();
    prefix.escape_debug().to_string()
}

fn rejected_registrations() -> Vec<RejectedRegistration> {
    let long_id = "w".repeat(257);
    let long_host = "h".repeat(256);
    let long_device = "d".repeat(65);
    let long_model = "m".repeat(129);
    let too_many_models: Vec<String> = (0..65).map(|i| format!("model-{i}")).collect();

    vec![
        RejectedRegistration {
            name: "empty worker_id",
            request: registration("", |_| {}),
            field: "worker_id",
            quoted: "\"\"".to_string(),
        },
        RejectedRegistration {
            name: "257-byte worker_id",
            request: registration(&long_id, |_| {}),
            field: "worker_id",
            quoted: quoted_prefix(&long_id, 32),
        },
        RejectedRegistration {
            name: "worker_id with newline",
            request: registration("bad\nid", |_| {}),
            field: "worker_id",
            quoted: quoted_prefix("bad\nid", 6),
        },
        RejectedRegistration {
            name: "worker_id with bell",
            request: registration("bad\u{7}id", |_| {}),
            field: "worker_id",
            quoted: quoted_prefix("bad\u{7}id", 6),
        },
        RejectedRegistration {
            name: "256-byte host",
            request: registration("long-host", |r| r.host = long_host.clone()),
            field: "host",
            quoted: quoted_prefix(&long_host, 32),
        },
        RejectedRegistration {
            name: "host with space",
            request: registration("space-host", |r| r.host = "a b".to_string()),
            field: "host",
            quoted: "a b".to_string(),
        },
        RejectedRegistration {
            name: "host with tab",
            request: registration("tab-host", |r| r.host = "h\tx".to_string()),
            field: "host",
            quoted: quoted_prefix("h\tx", 3),
        },
        RejectedRegistration {
            name: "port -1",
            request: registration("low-port", |r| r.port = -1),
            field: "port",
            quoted: "-1".to_string(),
        },
        RejectedRegistration {
            name: "port 65536",
            request: registration("high-port", |r| r.port = 65_536),
            field: "port",
            quoted: "65536".to_string(),
        },
        RejectedRegistration {
            name: "65-byte device_type",
            request: registration("long-device", |r| {
                capabilities(r, |c| c.device_type = long_device.clone())
            }),
            field: "capabilities.device_type",
            quoted: quoted_prefix(&long_device, 32),
        },
        RejectedRegistration {
            name: "65 supported_models",
            request: registration("many-models", |r| {
                capabilities(r, |c| c.supported_models = too_many_models.clone())
            }),
            field: "capabilities.supported_models",
            quoted: "65".to_string(),
        },
        RejectedRegistration {
            name: "129-byte model name",
            request: registration("long-model", |r| {
                capabilities(r, |c| c.supported_models = vec![long_model.clone()])
            }),
            field: "capabilities.supported_models",
            quoted: quoted_prefix(&long_model, 32),
        },
        RejectedRegistration {
            name: "negative max_batch_size",
            request: registration("negative-batch", |r| {
                capabilities(r, |c| c.max_batch_size = -1)
            }),
            field: "capabilities.max_batch_size",
            quoted: "-1".to_string(),
        },
    ]
}

/// Asserts that the registry is empty and that the case's worker id cannot
/// heartbeat. A valid id gets `acknowledged=false`, and an id that breaks a
/// rule gets INVALID_ARGUMENT before the registry is read.
#[track_caller]
fn assert_nothing_stored(
    coordinator: &Coordinator,
    client: &MasterServiceClient,
    case: &RejectedRegistration,
) {
    assert_eq!(
        worker_ids(&coordinator.workers()),
        Vec::<String>::new(),
        "{}: a worker was stored",
        case.name
    );

    let result = try_heartbeat(client, &heartbeat_request(&case.request.worker_id));
    if case.field == "worker_id" {
        let status = rpc_status(result, case.name);
        assert_eq!(
            status.code(),
            RpcStatusCode::INVALID_ARGUMENT,
            "{}",
            case.name
        );
    } else {
        let reply =
            result.unwrap_or_else(|error| panic!("{}: heartbeat failed: {error}", case.name));
        assert!(!reply.acknowledged, "{}: heartbeat acknowledged", case.name);
    }
}

#[test]
fn registration_rules_reject_and_store_nothing() {
    let (coordinator, client) = setup(|_| {});

    for case in rejected_registrations() {
        let result = try_register(&client, &case.request);

        let status = rpc_status(result, case.name);
        let message = status.message();
        assert_eq!(
            status.code(),
            RpcStatusCode::INVALID_ARGUMENT,
            "{}: message {message:?}",
            case.name
        );
        assert!(
            message.contains(case.field),
            "{}: message {message:?} does not name {:?}",
            case.name,
            case.field
        );
        assert!(
            message.contains(&case.quoted),
            "{}: message {message:?} does not quote {:?}",
            case.name,
            case.quoted
        );
        assert_nothing_stored(&coordinator, &client, &case);
    }
}

#[test]
fn invalid_ids_cannot_heartbeat() {
    let (_coordinator, client) = setup(|_| {});
    let long_id = "w".repeat(257);

    for id in ["", long_id.as_str(), "bad\nid", "bad\u{7}id"] {
        let result = try_heartbeat(&client, &heartbeat_request(id));

        let message = assert_rpc_error(result, RpcStatusCode::INVALID_ARGUMENT, "worker_id");
        assert!(
            message.contains(&quoted_prefix(id, 32)),
            "message {message:?} does not quote the id"
        );
    }
}

#[test]
fn boundary_values_accepted() {
    let (coordinator, client) = setup(|_| {});
    let id_256 = "w".repeat(256);
    let max_models: Vec<String> = (0..64).map(|i| format!("{i:0>128}")).collect();

    let accepted = vec![
        registration(&id_256, |_| {}),
        registration("host-255", |r| r.host = "h".repeat(255)),
        registration("port-0", |r| r.port = 0),
        registration("port-65535", |r| r.port = 65_535),
        registration("device-64", |r| {
            capabilities(r, |c| c.device_type = "d".repeat(64))
        }),
        registration("models-64x128", |r| {
            capabilities(r, |c| c.supported_models = max_models.clone())
        }),
        registration("batch-0", |r| capabilities(r, |c| c.max_batch_size = 0)),
    ];
    for request in &accepted {
        let response = try_register(&client, request).unwrap_or_else(|error| {
            panic!("registering {:.20}... failed: {error}", request.worker_id)
        });
        assert!(response.success);
        assert_eq!(response.assigned_worker_id, request.worker_id);
    }

    let stored = coordinator.workers();
    assert_eq!(stored.len(), accepted.len());
    for request in &accepted {
        let record = find_worker(&coordinator, &request.worker_id)
            .unwrap_or_else(|| panic!("{:.20}... is not stored", request.worker_id));
        assert_eq!(record.host, request.host);
        assert_eq!(record.port, request.port);
        assert!(heartbeat_acknowledged(&client, &request.worker_id));
    }
    let models = find_worker(&coordinator, "models-64x128").expect("stored");
    assert_eq!(models.capabilities.supported_models, max_models);
}

#[test]
fn heartbeat_job_id_limit() {
    let (coordinator, client) = setup(|_| {});
    register(&client, "worker-1");
    let status = |job_id: String| pb::HeartbeatRequest {
        worker_id: "worker-1".to_string(),
        status: MessageField::some(pb::WorkerStatus {
            current_job_id: job_id,
            completed_batches: 3,
            ..Default::default()
        }),
        ..Default::default()
    };

    let long_job = "j".repeat(257);
    let result = try_heartbeat(&client, &status(long_job.clone()));
    let message = assert_rpc_error(
        result,
        RpcStatusCode::INVALID_ARGUMENT,
        "status.current_job_id",
    );
    assert!(
        message.contains(&quoted_prefix(&long_job, 32)),
        "message {message:?} does not quote the job id"
    );
    let record = find_worker(&coordinator, "worker-1").expect("worker-1 is stored");
    assert_eq!(record.last_status, None, "a rejected status was stored");

    let result = try_heartbeat(&client, &status("job\n1".to_string()));
    assert_rpc_error(
        result,
        RpcStatusCode::INVALID_ARGUMENT,
        "status.current_job_id",
    );
    let record = find_worker(&coordinator, "worker-1").expect("worker-1 is stored");
    assert_eq!(record.last_status, None, "a rejected status was stored");

    let job_256 = "j".repeat(256);
    let reply = try_heartbeat(&client, &status(job_256.clone())).expect("heartbeat succeeds");
    assert!(reply.acknowledged);
    let record = find_worker(&coordinator, "worker-1").expect("worker-1 is stored");
    let stored = record.last_status.expect("the status is stored");
    assert_eq!(stored.current_job_id, job_256);
    assert_eq!(stored.completed_batches, 3);
}

#[test]
fn max_workers_rejects_new_ids() {
    let (coordinator, client) = setup(|config| config.max_workers = 2);
    register(&client, "worker-1");
    register(&client, "worker-2");

    let result = try_register(&client, &register_request("worker-3"));
    assert_rpc_code(result, RpcStatusCode::RESOURCE_EXHAUSTED);
    assert_eq!(worker_ids(&coordinator.workers()), ["worker-1", "worker-2"]);
    assert!(!heartbeat_acknowledged(&client, "worker-3"));

    let mut again = register_request("worker-2");
    again.port = 9000;
    let response = try_register(&client, &again).expect("a known id can re-register");
    assert!(response.success);
    assert_eq!(worker_ids(&coordinator.workers()), ["worker-1", "worker-2"]);
    let record = find_worker(&coordinator, "worker-2").expect("worker-2 is stored");
    assert_eq!(record.port, 9000);
}

#[test]
fn long_value_shortened_in_message() {
    let (_coordinator, client) = setup(|_| {});
    let long_host = "h".repeat(4000);

    let result = try_register(
        &client,
        &registration("worker-1", |r| r.host = long_host.clone()),
    );

    let message = assert_rpc_error(result, RpcStatusCode::INVALID_ARGUMENT, "host");
    assert!(
        message.contains(&"h".repeat(32)),
        "message {message:?} does not quote the start of the host"
    );
    assert!(
        message.len() < 400,
        "message is {} bytes for a 4000-byte value",
        message.len()
    );
    assert!(
        message.contains("4000"),
        "message {message:?} does not give the value's length"
    );
}
