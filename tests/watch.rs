//! Tests `WatchWorkers`: the snapshot, live events in version order, the
//! cut-off of a watcher that stops reading, and the end of watches on stop.

mod api_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use api_common::{
    capabilities, deregister, heartbeat, master_client, next_event, next_item, read_snapshot,
    register, register_with, rpc_status, start, start_default, test_config, watch, CALL_TIMEOUT,
};
use grpc_coordinator::proto::master::{EventKind, WorkerEvent};
use grpc_coordinator::Config;
use grpcio::RpcStatusCode;

/// Sends a heartbeat every 100 ms for each id in `ids` until `stop` is set
/// or 30 seconds have passed.
fn keep_alive(
    address: std::net::SocketAddr,
    ids: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let client = master_client(address);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
            let current: Vec<String> = ids.lock().unwrap().clone();
            for id in current {
                heartbeat(&client, &id, 0);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[track_caller]
fn assert_event(event: &WorkerEvent, kind: EventKind, id: &str, version: u64) {
    assert_eq!(event.kind.enum_value(), Ok(kind), "event {event}");
    assert_eq!(event.worker.worker_id, id, "event {event}");
    assert_eq!(event.membership_version, version, "event {event}");
}

#[test]
fn watch_snapshot_then_changes() {
    let (_coordinator, address) = start(Config {
        heartbeat_timeout: Duration::from_secs(1),
        monitor_interval: Duration::from_millis(50),
        ..test_config()
    });
    let client = master_client(address);
    for id in ["w-c", "w-a", "w-b"] {
        register(&client, id);
    }
    // A thread keeps w-a, w-c and w-d alive. w-c leaves that list once the
    // other changes have been seen, so it is the only worker evicted.
    let alive = Arc::new(Mutex::new(vec![
        "w-a".to_string(),
        "w-c".to_string(),
        "w-d".to_string(),
    ]));
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeats = keep_alive(address, alive.clone(), stop.clone());

    let mut stream = watch(&client, CALL_TIMEOUT);
    let (snapshot, synced) = read_snapshot(&mut stream);
    let snapshot_ids: Vec<&str> = snapshot
        .iter()
        .map(|event| event.worker.worker_id.as_str())
        .collect();
    assert_eq!(snapshot_ids, ["w-a", "w-b", "w-c"]);
    assert_eq!(synced, 3, "three joins");
    for event in &snapshot {
        assert_eq!(event.membership_version, synced, "event {event}");
    }

    let joined = register(&client, "w-d");
    let event = next_event(&mut stream);
    assert_event(&event, EventKind::JOINED, "w-d", synced + 1);
    assert_eq!(event.worker.incarnation, joined.incarnation);

    let reregistered = register(&client, "w-a");
    let event = next_event(&mut stream);
    assert_event(&event, EventKind::REREGISTERED, "w-a", synced + 2);
    assert_eq!(event.worker.incarnation, reregistered.incarnation);

    assert!(deregister(&client, "w-b", 0).unwrap().removed);
    assert_event(&next_event(&mut stream), EventKind::LEFT, "w-b", synced + 3);

    alive.lock().unwrap().retain(|id| id != "w-c");
    assert_event(
        &next_event(&mut stream),
        EventKind::EVICTED,
        "w-c",
        synced + 4,
    );

    stop.store(true, Ordering::Release);
    heartbeats.join().unwrap();
}

/// Set by `CUT_OFF_LOG` when the coordinator logs that it cut off a watcher.
static CUT_OFF_LOGGED: AtomicBool = AtomicBool::new(false);

/// A logger that only records whether the coordinator's cut-off warning
/// ("cut off N watchers that fell more than 4096 events behind") was logged.
struct CutOffLog;

impl log::Log for CutOffLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.args().to_string().contains("fell more than") {
            CUT_OFF_LOGGED.store(true, Ordering::Release);
        }
    }

    fn flush(&self) {}
}

static CUT_OFF_LOG: CutOffLog = CutOffLog;

/// Counts and slowest reply of the heartbeats sent while the registrations ran.
struct HeartbeatTimes {
    sent: usize,
    not_acknowledged: usize,
    slowest: Duration,
}

#[test]
fn slow_watcher_cut_off() {
    // Registration stops once the cut-off is logged. Without that log line
    // it goes on to MAX_REGISTRATIONS, and the stream status is checked the same.
    const MAX_REGISTRATIONS: usize = 30_000;
    log::set_logger(&CUT_OFF_LOG).expect("no other logger in this test binary");
    log::set_max_level(log::LevelFilter::Warn);

    let (_coordinator, address) = start_default();
    let client = master_client(address);
    let steady = register(&client, "steady").incarnation;
    let mut stalled = watch(&client, Duration::from_secs(300));

    let stop = Arc::new(AtomicBool::new(false));
    let heartbeats = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let client = master_client(address);
            let mut times = HeartbeatTimes {
                sent: 0,
                not_acknowledged: 0,
                slowest: Duration::ZERO,
            };
            let deadline = Instant::now() + Duration::from_secs(300);
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                let started = Instant::now();
                let reply = heartbeat(&client, "steady", steady);
                times.slowest = times.slowest.max(started.elapsed());
                times.sent += 1;
                if !reply.acknowledged {
                    times.not_acknowledged += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            times
        })
    };

    // 64 models of 128 bytes make each event about 8 KB. 200 ids are
    // registered again and again, so the registry itself stays small.
    let models: Vec<String> = (0..64)
        .map(|model| format!("{model:03}{}", "m".repeat(125)))
        .collect();
    let models: Vec<&str> = models.iter().map(String::as_str).collect();
    let large = capabilities("cuda", true, &models);
    let mut registrations = 0;
    while registrations < MAX_REGISTRATIONS && !CUT_OFF_LOGGED.load(Ordering::Acquire) {
        register_with(
            &client,
            &format!("bulk-{}", registrations % 200),
            large.clone(),
        );
        registrations += 1;
    }
    stop.store(true, Ordering::Release);
    let times = heartbeats.join().unwrap();

    assert!(times.sent >= 5, "only {} heartbeats were sent", times.sent);
    assert_eq!(
        times.not_acknowledged, 0,
        "{} of {} heartbeats were not acknowledged",
        times.not_acknowledged, times.sent
    );
    assert!(
        times.slowest < Duration::from_secs(1),
        "the slowest heartbeat took {:?}",
        times.slowest
    );

    let mut delivered = 0;
    let status = loop {
        match next_item(&mut stalled) {
            Some(Ok(_)) => delivered += 1,
            Some(Err(error)) => break rpc_status(error),
            None => panic!("the watch ended without a status after {delivered} events"),
        }
        assert!(
            delivered <= registrations + 2,
            "the watch delivered more events than there were changes"
        );
    };
    assert_eq!(
        status.code(),
        RpcStatusCode::RESOURCE_EXHAUSTED,
        "after {registrations} registrations and {delivered} events: {}",
        status.message()
    );
    assert!(
        status.message().contains("fell behind"),
        "message: {}",
        status.message()
    );
}

#[test]
fn stop_ends_watch_unavailable() {
    let (mut coordinator, address) = start_default();
    let client = master_client(address);
    register(&client, "w1");
    let mut stream = watch(&client, CALL_TIMEOUT);
    read_snapshot(&mut stream);

    coordinator.stop();

    let status = match next_item(&mut stream) {
        Some(Err(error)) => rpc_status(error),
        Some(Ok(event)) => panic!("unexpected event after stop: {event}"),
        None => panic!("the watch ended without a status"),
    };
    assert_eq!(
        status.code(),
        RpcStatusCode::UNAVAILABLE,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("stopping"),
        "message: {}",
        status.message()
    );
}
