//! Tests the `grpc.health.v1.Health` service: Check while serving, unknown
//! services, and a Watch that follows the coordinator through its stop.

mod api_common;

use std::sync::mpsc::{Receiver, RecvTimeoutError};

use api_common::{
    call_option, forward_stream, health_client, rpc_status, start_default, CALL_TIMEOUT,
};
use grpc_coordinator::proto::health::health_check_response::ServingStatus;
use grpc_coordinator::proto::health::{HealthCheckRequest, HealthCheckResponse};
use grpc_coordinator::proto::health_grpc::HealthClient;
use grpcio::RpcStatusCode;

type Updates = Receiver<grpcio::Result<HealthCheckResponse>>;

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_string(),
        ..Default::default()
    }
}

fn check(client: &HealthClient, service: &str) -> grpcio::Result<HealthCheckResponse> {
    client.check_opt(&request(service), call_option())
}

/// Opens a Watch for `service` and returns the receiver of its updates.
fn watch(client: &HealthClient, service: &str) -> Updates {
    let stream = client
        .watch_opt(&request(service), call_option())
        .expect("Watch starts");
    forward_stream(stream, |task| client.spawn(task))
}

#[track_caller]
fn next_status(updates: &Updates) -> ServingStatus {
    match updates.recv_timeout(CALL_TIMEOUT) {
        Ok(Ok(response)) => response
            .status
            .enum_value()
            .unwrap_or_else(|value| panic!("unknown serving status {value}")),
        Ok(Err(error)) => panic!("health watch failed: {error}"),
        Err(error) => panic!("no health watch update: {error}"),
    }
}

#[test]
fn check_serving_for_known_services() {
    let (_coordinator, address) = start_default();
    let client = health_client(address);

    for service in ["", "distributedml.MasterService"] {
        let response = check(&client, service).expect("Check succeeds");
        assert_eq!(
            response.status.enum_value(),
            Ok(ServingStatus::SERVING),
            "service {service:?}"
        );
    }
}

#[test]
fn check_unknown_service_not_found() {
    let (_coordinator, address) = start_default();
    let client = health_client(address);

    let status = rpc_status(check(&client, "no.such.Service").expect_err("Check fails"));

    assert_eq!(status.code(), RpcStatusCode::NOT_FOUND);
}

#[test]
fn watch_follows_stop() {
    let (mut coordinator, address) = start_default();
    let client = health_client(address);
    let updates = watch(&client, "distributedml.MasterService");
    assert_eq!(next_status(&updates), ServingStatus::SERVING);

    let stopping = std::thread::spawn(move || coordinator.stop());
    assert_eq!(next_status(&updates), ServingStatus::NOT_SERVING);

    match updates.recv_timeout(CALL_TIMEOUT) {
        Err(RecvTimeoutError::Disconnected) => {}
        Ok(Err(error)) => {
            let status = rpc_status(error);
            assert_eq!(
                status.code(),
                RpcStatusCode::UNAVAILABLE,
                "{}",
                status.message()
            );
        }
        Ok(Ok(response)) => panic!("unexpected update after NOT_SERVING: {response}"),
        Err(RecvTimeoutError::Timeout) => panic!("the watch did not end after the stop"),
    }
    stopping.join().expect("stop completes");
}

#[test]
fn watch_unknown_service_reports_unknown() {
    let (_coordinator, address) = start_default();
    let client = health_client(address);

    let updates = watch(&client, "no.such.Service");

    assert_eq!(next_status(&updates), ServingStatus::SERVICE_UNKNOWN);
}
