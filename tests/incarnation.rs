//! Tests registration and coordinator incarnations, and heartbeat fencing.

mod api_common;

use std::time::{Duration, Instant};

use api_common::{heartbeat, master_client, register, start, start_default, test_config};
use grpc_coordinator::Config;

#[test]
fn registration_incarnations_differ() {
    let (_coordinator, address) = start_default();
    let client = master_client(address);

    let first = register(&client, "w1").incarnation;
    let again = register(&client, "w1").incarnation;
    let other = register(&client, "w2").incarnation;

    assert_ne!(first, 0);
    assert_ne!(again, 0);
    assert_ne!(other, 0);
    assert_ne!(first, again, "a re-registration gets a fresh incarnation");
    assert_ne!(first, other);
    assert_ne!(again, other);
}

#[test]
fn coordinator_incarnation_in_replies() {
    let (coordinator, address) = start_default();
    let client = master_client(address);

    let registered = register(&client, "w1");
    let acknowledged = heartbeat(&client, "w1", registered.incarnation);
    let unknown = heartbeat(&client, "nobody", 0);

    assert_ne!(registered.coordinator_incarnation, 0);
    assert_eq!(
        registered.coordinator_incarnation,
        coordinator.coordinator_incarnation()
    );
    assert_eq!(
        acknowledged.coordinator_incarnation,
        registered.coordinator_incarnation
    );
    assert!(!unknown.acknowledged);
    assert_eq!(
        unknown.coordinator_incarnation,
        registered.coordinator_incarnation
    );
}

#[test]
fn coordinator_incarnations_differ() {
    let (_first, first_address) = start_default();
    let (_second, second_address) = start_default();

    let first = register(&master_client(first_address), "w1").coordinator_incarnation;
    let second = register(&master_client(second_address), "w1").coordinator_incarnation;

    assert_ne!(first, 0);
    assert_ne!(second, 0);
    assert_ne!(first, second);
}

#[test]
fn stale_heartbeat_fenced_and_evicted() {
    let timeout = Duration::from_millis(400);
    let (coordinator, address) = start(Config {
        heartbeat_timeout: timeout,
        monitor_interval: Duration::from_millis(50),
        ..test_config()
    });
    let client = master_client(address);
    let stale = register(&client, "w1").incarnation;
    let current = register(&client, "w1").incarnation;
    let reregistered_at = Instant::now();

    // Only stale heartbeats follow, every 50 ms, which is well inside the
    // timeout, so the worker is evicted only if none refreshes its liveness.
    let mut sent = 0;
    let deadline = reregistered_at + Duration::from_secs(5);
    while coordinator
        .workers()
        .iter()
        .any(|worker| &*worker.id == "w1")
    {
        assert!(
            Instant::now() < deadline,
            "w1 still registered after {sent} stale heartbeats"
        );
        let reply = heartbeat(&client, "w1", stale);
        assert!(
            !reply.acknowledged,
            "heartbeat {sent} with a stale incarnation was acknowledged"
        );
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }

    assert!(
        reregistered_at.elapsed() >= timeout,
        "evicted before the timeout"
    );
    assert!(
        sent >= 4,
        "only {sent} stale heartbeats were sent before the eviction"
    );
    let reply = heartbeat(&client, "w1", current);
    assert!(!reply.acknowledged, "an evicted worker is unknown");
}

#[test]
fn current_incarnation_acknowledged() {
    let (coordinator, address) = start_default();
    let client = master_client(address);
    register(&client, "w1");
    let current = register(&client, "w1").incarnation;

    assert!(heartbeat(&client, "w1", current).acknowledged);
    let workers = coordinator.workers();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].incarnation, current);
}

#[test]
fn zero_incarnation_acknowledged() {
    let (_coordinator, address) = start_default();
    let client = master_client(address);
    register(&client, "w1");
    register(&client, "w1");

    assert!(heartbeat(&client, "w1", 0).acknowledged);
}
