//! The worker session against a real coordinator: registration, heartbeats,
//! re-registration after eviction or a coordinator restart, deregistration.

use std::sync::Arc;
use std::time::{Duration, Instant};

use grpc_coordinator::proto::master::DeregisterWorkerRequest;
use grpc_coordinator::proto::master_grpc::MasterServiceClient;
use grpc_coordinator::{
    Capabilities, Config, Coordinator, WorkerOptions, WorkerSession, WorkerSpec,
};
use grpcio::{ChannelBuilder, EnvBuilder};

const WAIT: Duration = Duration::from_secs(10);

fn start_coordinator(port: u16) -> Coordinator {
    let mut coordinator = Coordinator::new(Config {
        port,
        heartbeat_timeout: Duration::from_millis(400),
        monitor_interval: Duration::from_millis(50),
        threads: 2,
        ..Config::default()
    })
    .unwrap();
    coordinator.start().unwrap();
    coordinator
}

fn options(coordinator: &Coordinator, id: &str) -> WorkerOptions {
    let spec = WorkerSpec {
        id: id.to_string(),
        host: "127.0.0.1".to_string(),
        port: 0,
        capabilities: Capabilities {
            gpu_enabled: true,
            max_batch_size: 32,
            device_type: "cuda".to_string(),
            supported_models: vec!["resnet50".to_string()],
        },
    };
    let mut options = WorkerOptions::new(coordinator.local_addr().unwrap().to_string(), spec);
    options.heartbeat_interval = Duration::from_millis(50);
    options.call_timeout = Duration::from_secs(1);
    options.initial_backoff = Duration::from_millis(20);
    options.max_backoff = Duration::from_millis(200);
    options
}

#[track_caller]
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn registered_ids(coordinator: &Coordinator) -> Vec<String> {
    coordinator
        .workers()
        .iter()
        .map(|record| record.id.to_string())
        .collect()
}

#[test]
fn session_registers_and_stays_alive() {
    let coordinator = start_coordinator(0);
    let session = WorkerSession::start(options(&coordinator, "w1")).unwrap();

    let incarnation = session
        .wait_for_registration(None, WAIT)
        .expect("registered");
    assert!(session.is_registered());
    assert_eq!(
        session.coordinator_incarnation(),
        Some(coordinator.coordinator_incarnation())
    );

    // Three heartbeat timeouts pass; heartbeats keep the same registration.
    std::thread::sleep(Duration::from_millis(1200));
    let workers = coordinator.workers();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].incarnation, incarnation);
    assert_eq!(session.incarnation(), Some(incarnation));
}

#[test]
fn session_registers_again_after_removal() {
    let coordinator = start_coordinator(0);
    let session = WorkerSession::start(options(&coordinator, "w1")).unwrap();
    let first = session
        .wait_for_registration(None, WAIT)
        .expect("registered");

    let environment = Arc::new(EnvBuilder::new().cq_count(1).build());
    let channel =
        ChannelBuilder::new(environment).connect(&coordinator.local_addr().unwrap().to_string());
    let admin = MasterServiceClient::new(channel);
    let removed = admin
        .deregister_worker(&DeregisterWorkerRequest {
            worker_id: "w1".to_string(),
            ..Default::default()
        })
        .unwrap();
    assert!(removed.removed);

    let second = session
        .wait_for_registration(Some(first), WAIT)
        .expect("registered again");
    assert_ne!(second, first);
    wait_until("the worker is back", || {
        registered_ids(&coordinator) == ["w1"]
    });
}

#[test]
fn session_follows_coordinator_restart() {
    let mut first_coordinator = start_coordinator(0);
    let port = first_coordinator.local_addr().unwrap().port();
    let session = WorkerSession::start(options(&first_coordinator, "w1")).unwrap();
    let first = session
        .wait_for_registration(None, WAIT)
        .expect("registered");
    let first_coordinator_incarnation = first_coordinator.coordinator_incarnation();

    first_coordinator.stop();
    let second_coordinator = start_coordinator(port);
    assert_ne!(
        second_coordinator.coordinator_incarnation(),
        first_coordinator_incarnation
    );

    let second = session
        .wait_for_registration(Some(first), WAIT)
        .expect("registered with the new coordinator");
    assert_ne!(second, first);
    assert_eq!(
        session.coordinator_incarnation(),
        Some(second_coordinator.coordinator_incarnation())
    );
    wait_until("the new coordinator lists the worker", || {
        registered_ids(&second_coordinator) == ["w1"]
    });
}

#[test]
fn stop_deregisters_at_once() {
    let coordinator = start_coordinator(0);
    let mut session = WorkerSession::start(options(&coordinator, "w1")).unwrap();
    session
        .wait_for_registration(None, WAIT)
        .expect("registered");

    let started = Instant::now();
    session.stop();

    assert!(registered_ids(&coordinator).is_empty());
    assert!(!session.is_registered());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    session.stop();
}

#[test]
fn drop_deregisters() {
    let coordinator = start_coordinator(0);
    let session = WorkerSession::start(options(&coordinator, "w1")).unwrap();
    session
        .wait_for_registration(None, WAIT)
        .expect("registered");

    drop(session);

    assert!(registered_ids(&coordinator).is_empty());
}

#[test]
fn session_waits_for_late_coordinator() {
    // Reserve a port, then free it so the session starts against nothing.
    let probe = start_coordinator(0);
    let address = probe.local_addr().unwrap();
    let mut options = options(&probe, "late");
    drop(probe);
    options.endpoint = address.to_string();

    let session = WorkerSession::start(options).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!session.is_registered());

    let coordinator = start_coordinator(address.port());
    session
        .wait_for_registration(None, WAIT)
        .expect("registered once the coordinator is up");
    assert_eq!(registered_ids(&coordinator), ["late"]);
}

#[test]
fn invalid_spec_rejected_at_start() {
    let coordinator = start_coordinator(0);
    let mut options = options(&coordinator, "w1");
    options.spec.port = 70_000;

    let error = WorkerSession::start(options).err().expect("rejected");

    assert!(error.to_string().contains("port"), "{error}");
}
