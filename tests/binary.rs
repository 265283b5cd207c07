//! The grpc-coordinator binary: flags, exit codes, its log and signals.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const BINARY: &str = env!("CARGO_BIN_EXE_grpc-coordinator");
/// Upper bound on the wait for the binary to start listening or to exit.
const PROCESS_DEADLINE: Duration = Duration::from_secs(10);

/// What a finished run of the binary printed and how it exited.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text)
            .expect("the pipe is readable");
        text
    })
}

/// Waits for `child` to exit, killing it and failing the test when it is
/// still running after `PROCESS_DEADLINE`.
#[track_caller]
fn wait_for_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("grpc-coordinator still running after {PROCESS_DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the binary with `args` until it exits.
#[track_caller]
fn run_to_exit(args: &[&str]) -> Finished {
    let mut child = Command::new(BINARY)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = read_in_background(child.stdout.take().expect("stdout is piped"));
    let stderr = read_in_background(child.stderr.take().expect("stderr is piped"));

    let status = wait_for_exit(&mut child);

    Finished {
        status,
        stdout: stdout.join().expect("stdout reader finishes"),
        stderr: stderr.join().expect("stderr reader finishes"),
    }
}

/// A binary serving on a loopback port. Dropping it kills the process.
struct Server {
    child: Child,
    address: SocketAddr,
    stderr_lines: Receiver<String>,
}

impl Server {
    /// Starts the binary on a free loopback port and waits for its
    /// `listening on` log line.
    #[track_caller]
    fn start() -> Server {
        let mut child = Command::new(BINARY)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, stderr_lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });

        let mut server = Server {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr_lines,
        };
        let line = server
            .wait_for_line("listening on ")
            .expect("the binary logs its listening address");
        let (_, address) = line
            .split_once("listening on ")
            .expect("wait_for_line matched");
        server.address = address
            .trim()
            .parse()
            .unwrap_or_else(|error| panic!("{line:?} has no socket address: {error}"));
        server
    }

    /// Returns the first stderr line containing `fragment`, or `None` when
    /// none arrives before `PROCESS_DEADLINE` or stderr closes.
    fn wait_for_line(&self, fragment: &str) -> Option<String> {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = self.stderr_lines.recv_timeout(remaining).ok()?;
            if line.contains(fragment) {
                return Some(line);
            }
        }
    }

    /// Sends `signal` (a name such as `TERM`) with the `kill` command.
    #[track_caller]
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("the kill command runs");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn help_lists_every_flag() {
    for help in ["--help", "-h"] {
        let finished = run_to_exit(&[help]);

        assert!(finished.status.success(), "{help}: {}", finished.status);
        for flag in [
            "--host",
            "--port",
            "--heartbeat-timeout",
            "--monitor-interval",
            "--threads",
            "--max-workers",
            "--shutdown-grace",
        ] {
            assert!(
                finished.stdout.contains(flag),
                "{help} output does not list {flag}:\n{}",
                finished.stdout
            );
        }
    }
}

#[test]
fn bad_flags_exit_with_usage_error() {
    let cases: &[(&[&str], &str)] = &[
        (&["--heartbeat-timeout", "abc"], "--heartbeat-timeout"),
        (&["--heartbeat-timeout", "0s"], "--heartbeat-timeout"),
        (&["--monitor-interval", "-5s"], "--monitor-interval"),
        (&["--port", "70000"], "--port"),
        (&["--port", "http"], "--port"),
        (&["--threads", "0"], "--threads"),
        (&["--max-workers", "many"], "--max-workers"),
        (&["--shutdown-grace", "soon"], "--shutdown-grace"),
        (&["--host", "a b"], "--host"),
        (&["--port"], "--port"),
        (&["--bogus"], "--bogus"),
    ];

    for (args, flag) in cases {
        let finished = run_to_exit(args);

        assert_eq!(
            finished.status.code(),
            Some(2),
            "{args:?}: stderr {:?}",
            finished.stderr
        );
        assert!(
            finished.stderr.contains(flag),
            "{args:?}: stderr {:?} does not name {flag}",
            finished.stderr
        );
    }
}

#[test]
fn port_in_use_exits_with_cause() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
    let port = listener.local_addr().expect("bound").port();

    let finished = run_to_exit(&["--host", "127.0.0.1", "--port", &port.to_string()]);

    assert!(
        !finished.status.success(),
        "exited with {}",
        finished.status
    );
    let address = format!("127.0.0.1:{port}");
    assert!(
        finished
            .stderr
            .contains(&format!("failed to listen on {address}")),
        "stderr {:?} does not name {address}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("in use"),
        "stderr {:?} does not give the cause",
        finished.stderr
    );
}

#[test]
fn sigterm_stops_serving_binary() {
    stop_serving_binary_with("TERM");
}

#[test]
fn sigint_stops_serving_binary() {
    stop_serving_binary_with("INT");
}

#[track_caller]
fn stop_serving_binary_with(signal: &str) {
    let mut server = Server::start();
    assert_eq!(server.address.ip().to_string(), "127.0.0.1");
    assert_ne!(server.address.port(), 0);

    let client = connect(server.address);
    let response = register(&client, "worker-1");
    assert_eq!(response.assigned_worker_id, "worker-1");
    assert!(heartbeat_acknowledged(&client, "worker-1"));
    assert!(
        server.wait_for_line("worker worker-1 registered").is_some(),
        "no registration log line"
    );

    server.signal(signal);

    let status = wait_for_exit(&mut server.child);
    assert_eq!(status.code(), Some(0), "SIG{signal}: exited with {status}");
    assert!(
        server
            .wait_for_line(&format!("received SIG{signal}"))
            .is_some(),
        "no log line for SIG{signal}"
    );
    assert!(
        TcpStream::connect(server.address).is_err(),
        "{} still accepts connections after exit",
        server.address
    );
}
