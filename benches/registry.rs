//! Registry benchmarks at fleet sizes up to a million workers.
//!
//! Prints, side by side in one run:
//! - the cost of one heartbeat at 1,000 and at 1,000,000 workers;
//! - a sweep that evicts nothing, against a full scan of the fleet;
//! - the part of a new watch's snapshot taken under the lock, against a
//!   full sorted copy of every record;
//! - how long one eviction batch, the work done per lock acquisition, takes
//!   while a million workers are evicted;
//! - a full sweep of a million workers through the locked membership, and
//!   the slowest heartbeat another thread was served meanwhile.
//!
//! Run with `make bench` (release build).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grpc_coordinator::membership::{Membership, EVICTION_BATCH};
use grpc_coordinator::worker::{GpuFilter, WorkerFilter};
use grpc_coordinator::{Capabilities, Registry, WorkerSpec};

const MILLION: usize = 1_000_000;
const HEARTBEATS: usize = 2_000_000;
const TIMEOUT: Duration = Duration::from_secs(60);

fn spec(index: usize) -> WorkerSpec {
    WorkerSpec {
        id: format!("worker-{index:07}"),
        host: "10.1.2.3".to_string(),
        port: 50052,
        capabilities: Capabilities {
            gpu_enabled: index.is_multiple_of(2),
            max_batch_size: 64,
            device_type: "cuda".to_string(),
            supported_models: vec!["resnet50".to_string()],
        },
    }
}

fn filled_registry(workers: usize, start: Instant) -> (Registry, Vec<String>) {
    let mut registry = Registry::new(workers, TIMEOUT);
    let mut ids = Vec::with_capacity(workers);
    for index in 0..workers {
        let spec = spec(index);
        ids.push(spec.id.clone());
        registry.register(spec, index as u64 + 1, start, 0).unwrap();
    }
    (registry, ids)
}

/// Returns nanoseconds per heartbeat over `HEARTBEATS` heartbeats spread
/// pseudo-randomly across the fleet.
fn heartbeat_cost(workers: usize) -> f64 {
    let start = Instant::now();
    let (mut registry, ids) = filled_registry(workers, start);
    let mut index: usize = 12_345;
    let began = Instant::now();
    for step in 0..HEARTBEATS {
        // A multiplicative step visits ids in a cache-unfriendly order.
        index = (index.wrapping_mul(2_654_435_761) + step) % workers;
        let now = start + Duration::from_micros(step as u64);
        black_box(registry.heartbeat(&ids[index], 0, None, now));
    }
    began.elapsed().as_nanos() as f64 / HEARTBEATS as f64
}

/// Returns (sweep with no eviction, full scan) in microseconds at a million workers.
fn idle_sweep_against_scan() -> (f64, f64) {
    let start = Instant::now();
    let (mut registry, _) = filled_registry(MILLION, start);
    let now = start + Duration::from_secs(1);

    let began = Instant::now();
    let evicted = registry.evict_expired(now, usize::MAX);
    let sweep = began.elapsed().as_secs_f64() * 1e6;
    assert!(evicted.is_empty());

    // A filtered count visits every record once, as a sweep that scanned
    // the whole fleet would.
    let gpu_only = WorkerFilter {
        gpu: GpuFilter::GpuOnly,
        ..WorkerFilter::default()
    };
    let began = Instant::now();
    black_box(registry.count_matching(&gpu_only));
    let scan = began.elapsed().as_secs_f64() * 1e6;
    (sweep, scan)
}

/// Returns milliseconds at a million workers for (the part of a new watch's
/// snapshot taken under the membership lock, a full copy of every record in
/// id order).
fn snapshot_cost() -> (f64, f64) {
    let start = Instant::now();
    let (registry, _) = filled_registry(MILLION, start);

    let began = Instant::now();
    let shared = registry.shared_records();
    let under_lock = began.elapsed().as_secs_f64() * 1e3;
    assert_eq!(shared.len(), MILLION);
    drop(shared);

    let began = Instant::now();
    let copied = registry.snapshot();
    let full_copy = began.elapsed().as_secs_f64() * 1e3;
    assert_eq!(copied.len(), MILLION);
    (under_lock, full_copy)
}

/// Evicts a million expired workers in the batches a sweep uses; returns
/// (slowest batch, mean batch) in microseconds. A batch is what one lock
/// acquisition covers.
fn eviction_batch_hold() -> (f64, f64) {
    let start = Instant::now();
    let (mut registry, _) = filled_registry(MILLION, start);
    let late = start + TIMEOUT * 2;
    let mut slowest = Duration::ZERO;
    let mut total = Duration::ZERO;
    let mut batches = 0;
    loop {
        let began = Instant::now();
        let removed = registry.evict_expired(late, EVICTION_BATCH);
        let batch_time = began.elapsed();
        slowest = slowest.max(batch_time);
        total += batch_time;
        batches += 1;
        if removed.len() < EVICTION_BATCH {
            break;
        }
        black_box(removed);
    }
    assert!(registry.is_empty());
    (
        slowest.as_secs_f64() * 1e6,
        total.as_secs_f64() * 1e6 / f64::from(batches),
    )
}

/// Evicts a million workers through `Membership::sweep` while another
/// thread heartbeats; returns (sweep seconds, slowest heartbeat).
fn sweep_under_load() -> (f64, Duration, usize) {
    let membership = Arc::new(Membership::new(MILLION + 1, Duration::from_millis(1)));
    for index in 0..MILLION {
        membership.register(spec(index)).unwrap();
    }
    membership
        .register(WorkerSpec {
            id: "live".to_string(),
            ..spec(0)
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(5));

    let done = Arc::new(AtomicBool::new(false));
    let heartbeater = {
        let membership = membership.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut served = 0;
            while !done.load(Ordering::Relaxed) {
                let began = Instant::now();
                let _ = membership.heartbeat("live", 0, None);
                slowest = slowest.max(began.elapsed());
                served += 1;
            }
            (slowest, served)
        })
    };

    let began = Instant::now();
    let summary = membership.sweep();
    let sweep = began.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (slowest, served) = heartbeater.join().unwrap();
    assert!(summary.evicted >= MILLION, "{summary:?}");
    (sweep, slowest, served)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // and only checks that this file builds.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    log::set_max_level(log::LevelFilter::Off);

    let small = heartbeat_cost(1_000);
    let large = heartbeat_cost(MILLION);
    println!("heartbeat: {small:.0} ns at 1,000 workers, {large:.0} ns at 1,000,000 workers (ratio {:.2})", large / small);

    let (sweep, scan) = idle_sweep_against_scan();
    println!(
        "idle sweep at 1,000,000 workers: {sweep:.1} us, full scan {scan:.0} us (scan/sweep ratio {:.0})",
        scan / sweep.max(0.001)
    );

    let (under_lock, full_copy) = snapshot_cost();
    println!(
        "watch snapshot at 1,000,000 workers: {under_lock:.0} ms under the lock, full sorted copy {full_copy:.0} ms (ratio {:.0})",
        full_copy / under_lock
    );

    let (slowest, mean) = eviction_batch_hold();
    println!(
        "eviction batch of {EVICTION_BATCH} at 1,000,000 expired workers: slowest {slowest:.0} us, mean {mean:.0} us"
    );

    let (sweep, slowest, served) = sweep_under_load();
    println!(
        "evicting 1,000,000 workers: sweep {sweep:.2} s; {served} heartbeats served meanwhile, slowest {:.2} ms",
        slowest.as_secs_f64() * 1e3
    );
}
