//! Concurrent registrations and heartbeats leave a consistent registry.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;

use common::*;
use grpc_coordinator::proto::master as pb;
use protobuf::MessageField;

const THREADS: usize = 32;
const SHARED_IDS: usize = 4;
const HEARTBEAT_ROUNDS: usize = 20;

fn own_id(thread_index: usize) -> String {
    format!("worker-{thread_index:02}")
}

fn shared_id(index: usize) -> String {
    format!("shared-{index}")
}

/// Returns a registration whose port and device type both identify
/// the sending thread, so a record mixing two registrations is detected.
fn registration_from(id: &str, thread_index: usize) -> pb::RegisterWorkerRequest {
    let mut request = register_request(id);
    request.port = 10_000 + thread_index as i32;
    request.capabilities = MessageField::some(pb::WorkerCapabilities {
        device_type: format!("device-{thread_index}"),
        max_batch_size: thread_index as i32,
        ..Default::default()
    });
    request
}

#[test]
fn concurrent_registrations_stay_consistent() {
    let (coordinator, client) = setup(|config| config.threads = 4);
    let address = coordinator.local_addr().expect("serving");
    let environment = client_environment();
    let barrier = Arc::new(Barrier::new(THREADS));

    let workers: Vec<_> = (0..THREADS)
        .map(|thread_index| {
            let client = connect_with(environment.clone(), address);
            let barrier = barrier.clone();
            thread::spawn(move || {
                let own = own_id(thread_index);
                let shared: Vec<String> = (0..SHARED_IDS).map(shared_id).collect();
                barrier.wait();

                let response = try_register(&client, &registration_from(&own, thread_index))
                    .unwrap_or_else(|error| panic!("registering {own} failed: {error}"));
                assert!(response.success, "registering {own}: {response:?}");
                for id in &shared {
                    let response = try_register(&client, &registration_from(id, thread_index))
                        .unwrap_or_else(|error| panic!("registering {id} failed: {error}"));
                    assert!(response.success, "registering {id}: {response:?}");
                }

                let mut unacknowledged = Vec::new();
                for _ in 0..HEARTBEAT_ROUNDS {
                    for id in std::iter::once(&own).chain(&shared) {
                        if !heartbeat_acknowledged(&client, id) {
                            unacknowledged.push(id.clone());
                        }
                    }
                }
                unacknowledged
            })
        })
        .collect();

    for worker in workers {
        let unacknowledged = worker.join().expect("worker thread succeeds");
        assert_eq!(
            unacknowledged,
            Vec::<String>::new(),
            "unacknowledged heartbeats"
        );
    }

    let records = coordinator.workers();
    let ids = worker_ids(&records);
    let mut expected: Vec<String> = (0..THREADS).map(own_id).collect();
    expected.extend((0..SHARED_IDS).map(shared_id));
    expected.sort();
    assert_eq!(ids, expected, "registered ids, in id order");
    assert_eq!(records.len(), THREADS + SHARED_IDS);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids in {ids:?}");
    for id in &expected {
        assert!(
            heartbeat_acknowledged(&client, id),
            "{id} is not acknowledged"
        );
    }

    for record in &records {
        let thread_index = (record.port - 10_000) as usize;
        assert!(
            thread_index < THREADS,
            "{}: port {} matches no thread",
            record.id,
            record.port
        );
        assert_eq!(
            record.capabilities.device_type,
            format!("device-{thread_index}"),
            "{}: capabilities and port come from different registrations",
            record.id
        );
        assert_eq!(record.capabilities.max_batch_size, thread_index as i32);
        if record.id.starts_with("worker-") {
            assert_eq!(
                &*record.id,
                own_id(thread_index),
                "own id registered by another thread"
            );
        }
    }
}
