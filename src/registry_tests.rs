//! Unit tests of the registry with explicit instants.

use std::time::{Duration, Instant};

use super::*;
use crate::worker::{GpuFilter, WorkerFilter};

const TIMEOUT: Duration = Duration::from_secs(60);

fn spec(id: &str) -> WorkerSpec {
    WorkerSpec {
        id: id.to_string(),
        host: "10.0.0.1".to_string(),
        port: 7000,
        capabilities: Capabilities::default(),
    }
}

fn gpu_spec(id: &str, device_type: &str, models: &[&str]) -> WorkerSpec {
    let mut spec = spec(id);
    spec.capabilities = Capabilities {
        gpu_enabled: true,
        max_batch_size: 64,
        device_type: device_type.to_string(),
        supported_models: models.iter().map(|model| model.to_string()).collect(),
    };
    spec
}

fn registry() -> Registry {
    Registry::new(100, TIMEOUT)
}

#[track_caller]
fn ids(records: &[WorkerRecord]) -> Vec<&str> {
    records.iter().map(|record| &*record.id).collect()
}

#[test]
fn register_stores_worker_and_counts_as_heartbeat() {
    let mut registry = registry();
    let t0 = Instant::now();

    let registration = registry.register(spec("w1"), 7, t0, 1_000).unwrap();

    assert_eq!(registration.kind, RegistrationKind::Joined);
    let record = registry.get("w1").unwrap();
    assert_eq!(record.host, "10.0.0.1");
    assert_eq!(record.port, 7000);
    assert_eq!(record.incarnation, 7);
    assert_eq!(record.registered_at, t0);
    assert_eq!(record.last_heartbeat, t0);
    assert_eq!(record.registered_at_unix_ms, 1_000);
    assert_eq!(registry.len(), 1);
}

#[test]
fn reregistration_replaces_record() {
    let mut registry = registry();
    let t0 = Instant::now();
    registry.register(spec("w1"), 1, t0, 0).unwrap();
    registry.heartbeat("w1", 0, Some(WorkerStatus::default()), t0);

    let mut restarted = spec("w1");
    restarted.port = 7001;
    let registration = registry
        .register(restarted, 2, t0 + Duration::from_secs(5), 0)
        .unwrap();

    assert_eq!(registration.kind, RegistrationKind::Reregistered);
    let record = registry.get("w1").unwrap();
    assert_eq!(record.port, 7001);
    assert_eq!(record.incarnation, 2);
    assert_eq!(record.last_status, None);
    assert_eq!(registry.len(), 1);
}

#[test]
fn heartbeat_unknown_worker() {
    let mut registry = registry();
    let outcome = registry.heartbeat("ghost", 0, None, Instant::now());
    assert_eq!(outcome, HeartbeatOutcome::UnknownWorker);
    assert!(registry.is_empty());
}

#[test]
fn heartbeat_stores_status_and_refreshes() {
    let mut registry = registry();
    let t0 = Instant::now();
    registry.register(spec("w1"), 1, t0, 0).unwrap();
    let status = WorkerStatus {
        current_job_id: "job-9".to_string(),
        cpu_usage: 0.5,
        memory_usage: 0.25,
        gpu_usage: 0.75,
        completed_batches: 12,
    };

    let outcome = registry.heartbeat("w1", 0, Some(status.clone()), t0 + Duration::from_secs(10));

    assert_eq!(outcome, HeartbeatOutcome::Acknowledged);
    let record = registry.get("w1").unwrap();
    assert_eq!(record.last_heartbeat, t0 + Duration::from_secs(10));
    assert_eq!(record.last_status, Some(status));
}

#[test]
fn heartbeat_without_status_keeps_previous_status() {
    let mut registry = registry();
    let t0 = Instant::now();
    registry.register(spec("w1"), 1, t0, 0).unwrap();
    let status = WorkerStatus {
        completed_batches: 3,
        ..WorkerStatus::default()
    };
    registry.heartbeat("w1", 0, Some(status.clone()), t0);

    registry.heartbeat("w1", 0, None, t0 + Duration::from_secs(1));

    assert_eq!(registry.get("w1").unwrap().last_status, Some(status));
}

#[test]
fn stale_incarnation_is_fenced() {
    let mut registry = registry();
    let t0 = Instant::now();
    registry.register(spec("w1"), 5, t0, 0).unwrap();

    let later = t0 + Duration::from_secs(30);
    let outcome = registry.heartbeat("w1", 4, None, later);

    assert_eq!(outcome, HeartbeatOutcome::Fenced { current: 5 });
    assert_eq!(registry.get("w1").unwrap().last_heartbeat, t0);
    assert_eq!(
        registry.heartbeat("w1", 5, None, later),
        HeartbeatOutcome::Acknowledged
    );
    assert_eq!(
        registry.heartbeat("w1", 0, None, later),
        HeartbeatOutcome::Acknowledged
    );
}

#[test]
fn eviction_after_timeout_only() {
    let mut registry = registry();
    let t0 = Instant::now();
    registry.register(spec("silent"), 1, t0, 0).unwrap();
    registry.register(spec("alive"), 2, t0, 0).unwrap();
    registry.heartbeat("alive", 0, None, t0 + Duration::from_secs(50));

    let at_timeout = registry.evict_expired(t0 + TIMEOUT, usize::MAX);
    assert!(
        at_timeout.is_empty(),
        "silent for exactly the timeout is kept"
    );

    let removed = registry.evict_expired(t0 + TIMEOUT + Duration::from_millis(1), usize::MAX);

    assert_eq!(removed.len(), 1);
    assert_eq!(&*removed[0].record.id, "silent");
    assert_eq!(removed[0].kind, RemovalKind::Evicted);
    assert_eq!(removed[0].silent_for, TIMEOUT + Duration::from_millis(1));
    assert!(registry.get("silent").is_none());
    assert!(registry.get("alive").is_some());
}

#[test]
fn eviction_respects_limit_and_order() {
    let mut registry = registry();
    let t0 = Instant::now();
    for i in 0..10 {
        registry
            .register(
                spec(&format!("w{i}")),
                i + 1,
                t0 + Duration::from_secs(i),
                0,
            )
            .unwrap();
    }

    let late = t0 + Duration::from_secs(1000);
    let first = registry.evict_expired(late, 4);
    let rest = registry.evict_expired(late, 100);

    let first_ids: Vec<&str> = first.iter().map(|removal| &*removal.record.id).collect();
    assert_eq!(first_ids, ["w0", "w1", "w2", "w3"]);
    assert_eq!(rest.len(), 6);
    assert!(registry.is_empty());
}

#[test]
fn heartbeat_moves_worker_behind_others() {
    let mut registry = registry();
    let t0 = Instant::now();
    registry.register(spec("a"), 1, t0, 0).unwrap();
    registry
        .register(spec("b"), 2, t0 + Duration::from_secs(1), 0)
        .unwrap();
    registry.heartbeat("a", 0, None, t0 + Duration::from_secs(30));

    let removed = registry.evict_expired(t0 + Duration::from_secs(62), usize::MAX);

    assert_eq!(removed.len(), 1);
    assert_eq!(&*removed[0].record.id, "b");
    assert!(registry.get("a").is_some());
}

#[test]
fn evicted_worker_can_register_again() {
    let mut registry = registry();
    let t0 = Instant::now();
    registry.register(spec("w1"), 1, t0, 0).unwrap();
    let late = t0 + TIMEOUT * 2;
    assert_eq!(registry.evict_expired(late, usize::MAX).len(), 1);

    assert_eq!(
        registry.heartbeat("w1", 0, None, late),
        HeartbeatOutcome::UnknownWorker
    );
    let registration = registry.register(spec("w1"), 2, late, 0).unwrap();

    assert_eq!(registration.kind, RegistrationKind::Joined);
    assert_eq!(
        registry.heartbeat("w1", 0, None, late),
        HeartbeatOutcome::Acknowledged
    );
}

#[test]
fn out_of_order_instants_keep_list_sorted() {
    let mut registry = registry();
    let t0 = Instant::now();
    registry
        .register(spec("a"), 1, t0 + Duration::from_secs(10), 0)
        .unwrap();
    registry.register(spec("b"), 2, t0, 0).unwrap();

    assert_eq!(
        registry.get("b").unwrap().last_heartbeat,
        t0 + Duration::from_secs(10)
    );
    assert!(registry
        .evict_expired(t0 + TIMEOUT + Duration::from_secs(5), usize::MAX)
        .is_empty());
}

#[test]
fn full_registry_rejects_new_ids_only() {
    let mut registry = Registry::new(2, TIMEOUT);
    let t0 = Instant::now();
    registry.register(spec("a"), 1, t0, 0).unwrap();
    registry.register(spec("b"), 2, t0, 0).unwrap();

    let rejected = registry.register(spec("c"), 3, t0, 0);
    assert!(matches!(
        rejected,
        Err(Error::RegistryFull { max_workers: 2 })
    ));
    assert!(registry.get("c").is_none());

    let again = registry.register(spec("a"), 4, t0, 0).unwrap();
    assert_eq!(again.kind, RegistrationKind::Reregistered);
    assert_eq!(registry.len(), 2);
}

#[test]
fn deregister_removes_with_matching_incarnation() {
    let mut registry = registry();
    let t0 = Instant::now();
    registry.register(spec("w1"), 9, t0, 0).unwrap();

    assert!(registry.deregister("w1", 8, t0).is_none());
    assert!(registry.get("w1").is_some());
    let removal = registry.deregister("w1", 9, t0).unwrap();
    assert_eq!(removal.kind, RemovalKind::Deregistered);
    assert!(registry.get("w1").is_none());
    assert!(registry.deregister("w1", 0, t0).is_none());
}

#[test]
fn slots_are_reused_after_removal() {
    let mut registry = registry();
    let t0 = Instant::now();
    for round in 0..5 {
        registry.register(spec("w1"), round + 1, t0, 0).unwrap();
        registry.deregister("w1", 0, t0).unwrap();
    }
    assert_eq!(registry.slots.len(), 1);
}

#[test]
fn membership_version_counts_changes() {
    let mut registry = registry();
    let t0 = Instant::now();
    assert_eq!(registry.membership_version(), 0);

    registry.register(spec("a"), 1, t0, 0).unwrap();
    registry.register(spec("a"), 2, t0, 0).unwrap();
    registry.heartbeat("a", 0, None, t0);
    registry.register(spec("b"), 3, t0, 0).unwrap();
    registry.deregister("b", 0, t0).unwrap();
    registry.evict_expired(t0 + TIMEOUT * 2, usize::MAX);

    assert_eq!(registry.membership_version(), 5);
}

#[test]
fn page_lists_in_id_order_with_filter() {
    let mut registry = registry();
    let t0 = Instant::now();
    registry
        .register(gpu_spec("c", "cuda", &["resnet"]), 1, t0, 0)
        .unwrap();
    registry.register(spec("a"), 2, t0, 0).unwrap();
    registry
        .register(gpu_spec("b", "cuda", &["bert"]), 3, t0, 0)
        .unwrap();
    registry
        .register(gpu_spec("d", "rocm", &["resnet"]), 4, t0, 0)
        .unwrap();

    let everyone = registry.page(&WorkerFilter::default(), None, 10);
    assert_eq!(ids(&everyone.workers), ["a", "b", "c", "d"]);
    assert_eq!(everyone.last_id, None);
    assert_eq!(everyone.total_count, 4);

    let cuda = WorkerFilter {
        device_type: "cuda".to_string(),
        ..WorkerFilter::default()
    };
    let first = registry.page(&cuda, None, 1);
    assert_eq!(ids(&first.workers), ["b"]);
    assert_eq!(first.total_count, 2);
    let second = registry.page(&cuda, first.last_id.as_deref(), 1);
    assert_eq!(ids(&second.workers), ["c"]);
    assert_eq!(second.last_id, None);

    let resnet_gpu = WorkerFilter {
        gpu: GpuFilter::GpuOnly,
        supported_model: "resnet".to_string(),
        ..WorkerFilter::default()
    };
    assert_eq!(
        ids(&registry.page(&resnet_gpu, None, 10).workers),
        ["c", "d"]
    );
    let cpu_only = WorkerFilter {
        gpu: GpuFilter::CpuOnly,
        ..WorkerFilter::default()
    };
    assert_eq!(ids(&registry.page(&cpu_only, None, 10).workers), ["a"]);
}

#[test]
fn page_skips_worker_joining_before_cursor() {
    let mut registry = registry();
    let t0 = Instant::now();
    for id in ["b", "d", "f"] {
        registry.register(spec(id), 1, t0, 0).unwrap();
    }
    let first = registry.page(&WorkerFilter::default(), None, 2);
    assert_eq!(ids(&first.workers), ["b", "d"]);

    registry.register(spec("a"), 2, t0, 0).unwrap();
    registry.register(spec("e"), 3, t0, 0).unwrap();
    let second = registry.page(&WorkerFilter::default(), first.last_id.as_deref(), 2);

    assert_eq!(ids(&second.workers), ["e", "f"]);
}
