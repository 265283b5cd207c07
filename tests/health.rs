//! Tests the `grpc.health.v1.Health` service: Check while serving, unknown
//! services, and a Watch that follows the coordinator through its stop.

mod api_common;

use api_common::{call_option, health_client, next_item, rpc_status, start_default};
use grpc_coordinator::proto::health::health_check_response::ServingStatus;
use grpc_coordinator::proto::health::{HealthCheckRequest, HealthCheckResponse};
use grpc_coordinator::proto::health_grpc::HealthClient;
use grpcio::{ClientSStreamReceiver, RpcStatusCode};

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_string(),
        ..Default::default()
    }
}

fn check(client: &HealthClient, service: &str) -> grpcio::Result<HealthCheckResponse> {
    client.check_opt(&request(service), call_option())
}

#[track_caller]
fn next_status(stream: &mut ClientSStreamReceiver<HealthCheckResponse>) -> ServingStatus {
    match next_item(stream) {
        Some(Ok(response)) => response
            .status
            .enum_value()
            .unwrap_or_else(|value| panic!("unknown serving status {value}")),
        Some(Err(error)) => panic!("health watch failed: {error}"),
        None => panic!("health watch ended"),
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
    let mut stream = client
        .watch_opt(&request("distributedml.MasterService"), call_option())
        .expect("Watch starts");
    assert_eq!(next_status(&mut stream), ServingStatus::SERVING);

    let stopping = std::thread::spawn(move || coordinator.stop());
    assert_eq!(next_status(&mut stream), ServingStatus::NOT_SERVING);

    match next_item(&mut stream) {
        None => {}
        Some(Err(error)) => {
            let status = rpc_status(error);
            assert_eq!(
                status.code(),
                RpcStatusCode::UNAVAILABLE,
                "{}",
                status.message()
            );
        }
        Some(Ok(response)) => panic!("unexpected status after NOT_SERVING: {response}"),
    }
    stopping.join().expect("stop completes");
}

#[test]
fn watch_unknown_service_reports_unknown() {
    let (_coordinator, address) = start_default();
    let client = health_client(address);
    let mut stream = client
        .watch_opt(&request("no.such.Service"), call_option())
        .expect("Watch starts");

    assert_eq!(next_status(&mut stream), ServingStatus::SERVICE_UNKNOWN);
}
