//! A training worker that registers with a coordinator, heartbeats with a
//! simulated status until SIGINT or SIGTERM, then deregisters.
//!
//! Run a coordinator with `make run`, then this worker with `make run-worker`
//! or `cargo run --example worker -- --coordinator 127.0.0.1:50051`.

use std::process::ExitCode;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use grpc_coordinator::cli::parse_duration;
use grpc_coordinator::{Capabilities, WorkerOptions, WorkerSession, WorkerSpec, WorkerStatus};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const USAGE: &str =
    "Usage: worker [--coordinator HOST:PORT] [--worker-id ID] [--heartbeat-interval DURATION]
  --coordinator         Coordinator address [default: 127.0.0.1:50051]
  --worker-id           Worker id [default: worker-<process id>]
  --heartbeat-interval  Time between heartbeats, such as 500ms or 5s [default: 5s]";

struct Args {
    coordinator: String,
    worker_id: String,
    heartbeat_interval: Duration,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        coordinator: "127.0.0.1:50051".to_string(),
        worker_id: format!("worker-{}", std::process::id()),
        heartbeat_interval: Duration::from_secs(5),
    };
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("missing value for {flag}"))?;
        match flag.as_str() {
            "--coordinator" => parsed.coordinator = value,
            "--worker-id" => parsed.worker_id = value,
            "--heartbeat-interval" => {
                parsed.heartbeat_interval = parse_duration(&value)
                    .map_err(|reason| format!("invalid value for --heartbeat-interval: {reason}"))?
            }
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: failed to install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };

    let spec = WorkerSpec {
        id: args.worker_id,
        host: "127.0.0.1".to_string(),
        port: 0,
        capabilities: Capabilities {
            gpu_enabled: false,
            max_batch_size: 64,
            device_type: "cpu".to_string(),
            supported_models: vec!["resnet50".to_string(), "bert-base".to_string()],
        },
    };
    let mut options = WorkerOptions::new(args.coordinator, spec);
    options.heartbeat_interval = args.heartbeat_interval;
    let mut session = match WorkerSession::start(options) {
        Ok(session) => session,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };

    // Simulated training progress, reported with every heartbeat.
    let (stop_sender, stop) = crossbeam_channel::bounded::<()>(1);
    let signal_thread = std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            log::info!("received signal {signal}, stopping");
        }
        drop(stop_sender);
    });
    let mut completed_batches = 0;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_secs(1)) {
        completed_batches += 10;
        session.set_status(WorkerStatus {
            current_job_id: "example-job".to_string(),
            cpu_usage: 42.0,
            memory_usage: 30.0,
            gpu_usage: 0.0,
            completed_batches,
        });
    }
    let _ = signal_thread.join();

    session.stop();
    ExitCode::SUCCESS
}
