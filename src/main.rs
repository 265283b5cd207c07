//! The `grpc-coordinator` binary: parses flags, serves until SIGINT or
//! SIGTERM, then stops gracefully.

use std::process::ExitCode;

use grpc_coordinator::cli::{parse_args, usage, Command};
use grpc_coordinator::Coordinator;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("grpc-coordinator {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };

    // Signals are registered before serving so an early SIGTERM still stops
    // the coordinator gracefully.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: failed to install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };

    let mut coordinator = match Coordinator::new(config) {
        Ok(coordinator) => coordinator,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = coordinator.start() {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }

    if let Some(signal) = signals.forever().next() {
        let name = if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        log::info!("received {name}, stopping gracefully");
    }
    coordinator.stop();
    ExitCode::SUCCESS
}
