//! Coordinator start, stop and drop, binding, and library registration.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use grpc_coordinator::{Capabilities, Coordinator, WorkerSpec};
use grpcio::{CallOption, RpcStatusCode};

#[test]
fn start_port_zero_picks_port() {
    let mut coordinator = Coordinator::new(test_config()).expect("valid configuration");
    assert_eq!(coordinator.local_addr(), None);
    assert!(!coordinator.is_running());

    let address = coordinator.start().expect("the coordinator starts");

    assert_ne!(address.port(), 0);
    assert_eq!(address.ip().to_string(), "127.0.0.1");
    assert_eq!(coordinator.local_addr(), Some(address));
    assert!(coordinator.is_running());
    let client = connect(address);
    register(&client, "worker-1");
}

#[test]
fn stop_fast_with_long_interval() {
    let (mut coordinator, client) = setup(|config| {
        config.monitor_interval = Duration::from_secs(30);
    });
    register(&client, "worker-1");

    let started = Instant::now();
    coordinator.stop();
    let elapsed = started.elapsed();

    assert!(
        elapsed < Duration::from_secs(1),
        "stop took {elapsed:?} with a 30 s monitor interval"
    );
    assert!(!coordinator.is_running());
    assert_eq!(coordinator.local_addr(), None);
}

#[test]
fn stop_twice_is_noop() {
    let (mut coordinator, client) = setup(|_| {});
    let address = coordinator.local_addr().expect("serving");
    register(&client, "worker-1");

    coordinator.stop();
    let started = Instant::now();
    coordinator.stop();

    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!coordinator.is_running());
    assert_eq!(worker_ids(&coordinator.workers()), ["worker-1"]);
    assert!(
        TcpStream::connect(address).is_err(),
        "{address} still accepts connections after stop"
    );
}

#[test]
fn stopped_server_rejects_calls() {
    let (mut coordinator, client) = setup(|_| {});
    let address = coordinator.local_addr().expect("serving");
    register(&client, "worker-1");

    coordinator.stop();

    let options = CallOption::default().timeout(Duration::from_secs(5));
    let result = client.send_heartbeat_opt(&heartbeat_request("worker-1"), options);
    assert_rpc_code(result, RpcStatusCode::UNAVAILABLE);
    assert!(TcpStream::connect(address).is_err());
}

#[test]
fn drop_stops_running_coordinator() {
    let (coordinator, client) = setup(|_| {});
    let address = coordinator.local_addr().expect("serving");
    register(&client, "worker-1");

    let started = Instant::now();
    drop(coordinator);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        started.elapsed()
    );

    assert!(
        TcpStream::connect(address).is_err(),
        "{address} still accepts connections after drop"
    );
    let fresh_client = connect(address);
    let options = CallOption::default().timeout(Duration::from_secs(5));
    let result = fresh_client.send_heartbeat_opt(&heartbeat_request("worker-1"), options);
    assert_rpc_code(result, RpcStatusCode::UNAVAILABLE);
}

#[test]
fn start_twice_fails() {
    let (mut coordinator, _client) = setup(|_| {});
    let address = coordinator.local_addr().expect("serving");

    let error = coordinator.start().expect_err("a second start fails");

    assert!(
        error.to_string().contains(&address.to_string()),
        "error {error} does not name {address}"
    );
    assert_eq!(coordinator.local_addr(), Some(address));
}

#[test]
fn restart_after_stop_serves() {
    let (mut coordinator, client) = setup(|_| {});
    register(&client, "worker-1");
    coordinator.stop();

    let address = coordinator.start().expect("the coordinator starts again");

    let client = connect(address);
    assert!(heartbeat_acknowledged(&client, "worker-1"));
    register(&client, "worker-2");
    assert_eq!(worker_ids(&coordinator.workers()), ["worker-1", "worker-2"]);
}

#[test]
fn port_in_use_fails_with_address() {
    let (first, client) = setup(|_| {});
    let address = first.local_addr().expect("serving");

    let mut config = test_config();
    config.port = address.port();
    let mut second = Coordinator::new(config).expect("valid configuration");
    let result = second.start();

    let error = match result {
        Ok(bound) => panic!("a second coordinator also bound {bound}"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains(&address.to_string()),
        "error {error:?} does not name {address}"
    );
    assert!(error.contains("in use"), "error {error:?} gives no cause");
    assert!(!second.is_running());
    assert_eq!(second.local_addr(), None);

    // The first coordinator keeps serving.
    register(&client, "worker-1");
    assert_eq!(worker_ids(&first.workers()), ["worker-1"]);
}

#[test]
fn library_registration_visible_over_rpc() {
    let (coordinator, client) = setup(|_| {});
    let spec = WorkerSpec {
        id: "library-worker".to_string(),
        host: "127.0.0.1".to_string(),
        port: 7100,
        capabilities: Capabilities {
            gpu_enabled: false,
            max_batch_size: 16,
            device_type: "cpu".to_string(),
            supported_models: vec!["mlp".to_string()],
        },
    };

    let registration = coordinator
        .register_worker(spec.clone())
        .expect("registration succeeds");

    assert_eq!(&*registration.record.id, "library-worker");
    assert!(heartbeat_acknowledged(&client, "library-worker"));
    let workers = coordinator.workers();
    assert_eq!(worker_ids(&workers), ["library-worker"]);
    assert_eq!(workers[0].host, spec.host);
    assert_eq!(workers[0].port, spec.port);
    assert_eq!(workers[0].capabilities, spec.capabilities);
}

#[test]
fn library_registration_validates() {
    let coordinator = Coordinator::new(test_config()).expect("valid configuration");
    let spec = WorkerSpec {
        id: "bad\nid".to_string(),
        ..WorkerSpec::default()
    };

    let error = coordinator
        .register_worker(spec)
        .expect_err("an id with a newline is rejected");

    assert!(error.to_string().contains("worker_id"), "error: {error}");
    assert!(coordinator.workers().is_empty());
}
