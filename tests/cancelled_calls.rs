//! Streams whose client cancels them end on the server at once, without
//! waiting for the next membership or health change.

mod api_common;

use std::time::{Duration, Instant};

use api_common::{health_client, master_client, next_item, read_snapshot, start_default, watch};
use grpc_coordinator::proto::health::HealthCheckRequest;
use grpc_coordinator::Coordinator;
use grpcio::CallOption;

const WATCHES: usize = 5;

#[track_caller]
fn wait_for_calls(coordinator: &Coordinator, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while coordinator.calls_in_flight() != expected {
        assert!(
            Instant::now() < deadline,
            "calls in flight stayed at {} instead of {expected}",
            coordinator.calls_in_flight()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn cancelled_watches_end_at_once() {
    let (coordinator, address) = start_default();
    let client = master_client(address);
    let mut streams: Vec<_> = (0..WATCHES)
        .map(|_| watch(&client, Duration::from_secs(60)))
        .collect();
    for stream in &mut streams {
        read_snapshot(stream);
    }
    wait_for_calls(&coordinator, WATCHES);

    for stream in &mut streams {
        stream.cancel();
    }

    // No worker joins or leaves, so only the cancellation can end them.
    wait_for_calls(&coordinator, 0);
}

#[test]
fn cancelled_health_watch_ends_at_once() {
    let (coordinator, address) = start_default();
    let client = health_client(address);
    let mut stream = client
        .watch_opt(
            &HealthCheckRequest::default(),
            CallOption::default().timeout(Duration::from_secs(60)),
        )
        .unwrap();
    let first = next_item(&mut stream).expect("a first status").unwrap();
    assert_eq!(
        first.status.enum_value(),
        Ok(grpc_coordinator::proto::health::health_check_response::ServingStatus::SERVING)
    );
    wait_for_calls(&coordinator, 1);

    stream.cancel();

    wait_for_calls(&coordinator, 0);
}
