//! The `Coordinator`: owns configuration, membership, the gRPC server and
//! the monitor, and runs the graceful stop.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use grpcio::{ChannelBuilder, EnvBuilder, Environment, Server, ServerBuilder, ServerCredentials};

use crate::config::Config;
use crate::error::Error;
use crate::health::{create_health_service, HealthState};
use crate::in_flight::InFlight;
use crate::membership::Membership;
use crate::monitor::start_monitor;
use crate::periodic::PeriodicTask;
use crate::proto::health::health_check_response::ServingStatus;
use crate::registry::{Registration, WorkerRecord};
use crate::service::create_master_service;
use crate::worker::WorkerSpec;

/// Largest request the server accepts. The largest valid registration is
/// about 9 KiB, so 64 KiB leaves room while bounding what one call can cost.
pub const MAX_REQUEST_BYTES: i32 = 64 * 1024;

/// How long a stop waits for cancelled calls to wind down after the grace
/// period has run out.
const CANCEL_WAIT: Duration = Duration::from_secs(1);

/// How often a stop checks whether the calls in flight have finished.
const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// How often open `WaitForWorkers` calls are checked against their
/// deadlines, which bounds how late a timed-out wait replies.
const WAIT_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// A coordinator: create it with a `Config`, then `start()` and `stop()`.
pub struct Coordinator {
    config: Config,
    membership: Arc<Membership>,
    health: Arc<HealthState>,
    in_flight: InFlight,
    running: Option<Running>,
}

/// Server-side resources that exist only while the coordinator serves.
struct Running {
    // Field order is drop order: the server goes before its environment.
    server: Server,
    _environment: Arc<Environment>,
    monitor: PeriodicTask,
    wait_timer: PeriodicTask,
    address: SocketAddr,
}

impl Coordinator {
    /// Creates a stopped coordinator with empty membership.
    ///
    /// # Errors
    ///
    /// `Error::Config` when a configuration value is out of range.
    pub fn new(config: Config) -> Result<Coordinator, Error> {
        config.validate()?;
        let membership = Arc::new(Membership::new(
            config.max_workers,
            config.heartbeat_timeout,
        ));
        Ok(Coordinator {
            config,
            membership,
            health: Arc::new(HealthState::new()),
            in_flight: InFlight::default(),
            running: None,
        })
    }

    /// Binds the listening address, starts the completion-queue threads and
    /// the monitor, and returns the bound address.
    ///
    /// # Errors
    ///
    /// `Error::Bind` naming the address and the cause when it cannot be
    /// bound, `Error::AlreadyStarted` when already serving.
    pub fn start(&mut self) -> Result<SocketAddr, Error> {
        if let Some(running) = &self.running {
            return Err(Error::AlreadyStarted {
                address: running.address,
            });
        }

        let environment = Arc::new(
            EnvBuilder::new()
                .cq_count(self.config.threads)
                .name_prefix("grpc-server")
                .build(),
        );
        // gRPC C-core (1.56, as bundled by grpcio 0.13) sets SO_REUSEPORT by
        // default, so a second coordinator on a taken port would bind too
        // and take a share of its connections.
        let channel_args = ChannelBuilder::new(environment.clone())
            .max_receive_message_len(MAX_REQUEST_BYTES)
            .reuse_port(false)
            .build_args();
        let mut server = ServerBuilder::new(environment.clone())
            .channel_args(channel_args)
            .register_service(create_master_service(
                self.membership.clone(),
                self.in_flight.clone(),
            ))
            .register_service(create_health_service(
                self.health.clone(),
                self.in_flight.clone(),
            ))
            .build()?;

        let listen_address = self.config.listen_address();
        let port = server
            .add_listening_port(listen_address.clone(), ServerCredentials::insecure())
            .map_err(|_| bind_error(&listen_address))?;
        let address = resolve(&self.config.host, port)?;
        server.start();

        let monitor = start_monitor(self.membership.clone(), self.config.monitor_interval)
            .map_err(|error| Error::Config(format!("failed to start the monitor: {error}")))?;
        let membership = self.membership.clone();
        let wait_timer = PeriodicTask::start("coordinator-waits", WAIT_CHECK_INTERVAL, move || {
            membership.expire_waits()
        })
        .map_err(|error| Error::Config(format!("failed to start the wait timer: {error}")))?;
        self.health.set_all(ServingStatus::SERVING);
        log::info!("listening on {address}");

        self.running = Some(Running {
            server,
            _environment: environment,
            monitor,
            wait_timer,
            address,
        });
        Ok(address)
    }

    /// Returns the bound address while serving.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().map(|running| running.address)
    }

    /// Returns whether the coordinator is serving.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Returns the number of calls being handled, open watches and waits
    /// included.
    pub fn calls_in_flight(&self) -> usize {
        self.in_flight.count()
    }

    /// Returns the random nonzero number identifying this coordinator process.
    pub fn coordinator_incarnation(&self) -> u64 {
        self.membership.coordinator_incarnation()
    }

    /// Registers a worker directly, as a `RegisterWorker` call would.
    ///
    /// # Errors
    ///
    /// As `RegisterWorker`: `Error::InvalidArgument` or `Error::RegistryFull`.
    pub fn register_worker(&self, spec: WorkerSpec) -> Result<Registration, Error> {
        self.membership.register(spec)
    }

    /// Returns a snapshot of the registered workers, in id order.
    pub fn workers(&self) -> Vec<WorkerRecord> {
        self.membership.snapshot()
    }

    /// Returns the shared membership, for embedding the coordinator.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// Stops gracefully: reports NOT_SERVING, ends open watches and waits
    /// with `UNAVAILABLE`, stops and joins the monitor at once, stops
    /// accepting calls, gives in-flight calls the configured grace period,
    /// then cancels the rest and closes idle connections. Calling it again
    /// does nothing.
    pub fn stop(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        log::info!("stopping: {} workers registered", self.membership.len());

        self.health.set_all(ServingStatus::NOT_SERVING);
        self.membership.close_streams();
        self.health.close_watches();
        running.monitor.stop();
        running.wait_timer.stop();

        let shutdown = running.server.shutdown();
        let (done, finished) = bounded::<()>(1);
        let waiter = std::thread::Builder::new()
            .name("coordinator-shutdown".to_string())
            .spawn(move || {
                // The result only reports whether the queue was already shut down.
                let _ = futures::executor::block_on(shutdown);
                let _ = done.send(());
            });
        if let Err(error) = &waiter {
            log::error!("failed to spawn the shutdown waiter: {error}");
        }

        // Calls in flight get the grace period. Idle connections get none:
        // gRPC would wait for each client to acknowledge the GOAWAY, which an
        // idle client may take seconds to do.
        let deadline = Instant::now() + self.config.shutdown_grace;
        let mut completed = false;
        while waiter.is_ok() && self.in_flight.count() > 0 && Instant::now() < deadline {
            if finished.recv_timeout(DRAIN_POLL_INTERVAL).is_ok() {
                completed = true;
                break;
            }
        }
        if !completed {
            let remaining = self.in_flight.count();
            if remaining > 0 {
                log::warn!(
                    "{remaining} calls still in flight after {:?}; cancelling them",
                    self.config.shutdown_grace
                );
            }
            running.server.cancel_all_calls();
            if waiter.is_ok() && finished.recv_timeout(CANCEL_WAIT).is_err() {
                log::warn!("server shutdown did not complete within {CANCEL_WAIT:?}");
            }
        }
        log::info!("stopped");
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds the bind error, asking the operating system for the cause because
/// gRPC reports only that binding failed.
fn bind_error(address: &str) -> Error {
    let cause = match TcpListener::bind(address) {
        Err(error) => error.to_string(),
        Ok(_) => "gRPC could not listen there".to_string(),
    };
    Error::Bind {
        address: address.to_string(),
        cause,
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, Error> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| Error::Bind {
            address: format!("{host}:{port}"),
            cause: "the host does not resolve to an address".to_string(),
        })
}
