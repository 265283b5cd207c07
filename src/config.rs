//! Coordinator configuration and its defaults.

use std::time::Duration;

use crate::error::Error;

/// Default listening host: loopback, so a coordinator started by hand is not
/// reachable from other machines until the operator chooses an address.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default port, the one the original workers dial.
pub const DEFAULT_PORT: u16 = 50051;
/// Default heartbeat timeout: the original workers heartbeat every 10 to 30
/// seconds, so 60 seconds tolerates one or two lost heartbeats.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time between eviction sweeps: half the heartbeat timeout, so a
/// silent worker is evicted at most 90 seconds after its last heartbeat.
pub const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_secs(30);
/// Default cap on registered workers; it bounds memory on hostile input.
pub const DEFAULT_MAX_WORKERS: usize = 100_000;
/// Default time in-flight RPCs get to finish during a graceful stop before
/// they are cancelled.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything a `Coordinator` needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    /// 0 picks a free port; `Coordinator::local_addr` returns the bound one.
    pub port: u16,
    pub heartbeat_timeout: Duration,
    pub monitor_interval: Duration,
    /// Number of completion-queue threads serving RPCs.
    pub threads: usize,
    pub max_workers: usize,
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            monitor_interval: DEFAULT_MONITOR_INTERVAL,
            threads: default_threads(),
            max_workers: DEFAULT_MAX_WORKERS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl Config {
    /// Checks that every value is usable.
    ///
    /// # Errors
    ///
    /// `Error::Config` naming the first value out of range.
    pub fn validate(&self) -> Result<(), Error> {
        if self.host.is_empty() {
            return Err(Error::Config("host must not be empty".to_string()));
        }
        if self.heartbeat_timeout.is_zero() {
            return Err(Error::Config(
                "heartbeat timeout must be greater than zero".to_string(),
            ));
        }
        if self.monitor_interval.is_zero() {
            return Err(Error::Config(
                "monitor interval must be greater than zero".to_string(),
            ));
        }
        if self.threads == 0 {
            return Err(Error::Config("threads must be at least 1".to_string()));
        }
        if self.max_workers == 0 {
            return Err(Error::Config("max workers must be at least 1".to_string()));
        }
        Ok(())
    }

    /// Returns the address to listen on, with IPv6 hosts in brackets.
    pub fn listen_address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Returns the number of CPUs, or 1 when it cannot be read.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |count| count.get())
}
