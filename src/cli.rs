//! Command-line flags of the `grpc-coordinator` binary.

use std::time::Duration;

use crate::config::Config;

/// The action selected by the command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Config),
    Help,
    Version,
}

/// Returns the help text.
pub fn usage() -> String {
    let defaults = Config::default();
    format!(
        "grpc-coordinator {version}
Coordinator for distributed training: workers register, heartbeat and are
evicted when they fall silent.

Usage: grpc-coordinator [OPTIONS]

Options:
  --host HOST                  Address to listen on [default: {host}]
  --port PORT                  Port to listen on; 0 picks a free port [default: {port}]
  --heartbeat-timeout DURATION Evict workers silent for longer than this [default: 60s]
  --monitor-interval DURATION  Time between eviction sweeps [default: 30s]
  --threads N                  Completion-queue threads serving RPCs [default: number of CPUs]
  --max-workers N              Maximum number of registered workers [default: {max_workers}]
  --shutdown-grace DURATION    Time in-flight RPCs get to finish on stop [default: 5s]
  -h, --help                   Print this help and exit
  -V, --version                Print the version and exit

DURATION is a number with an optional unit: 500ms, 30s, 2m, 1h; a bare number
is seconds. RUST_LOG sets the log level (default: info). SIGINT or SIGTERM
stops the coordinator gracefully.
",
        version = env!("CARGO_PKG_VERSION"),
        host = defaults.host,
        port = defaults.port,
        max_workers = defaults.max_workers,
    )
}

/// Parses the arguments after the program name.
///
/// # Errors
///
/// A message naming the flag and the value at fault.
pub fn parse_args<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut config = Config::default();
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("missing value for {flag}"))
        };
        match flag.as_str() {
            "--host" => config.host = parse_host(&value()?)?,
            "--port" => config.port = parse_number("--port", &value()?)?,
            "--heartbeat-timeout" => {
                config.heartbeat_timeout =
                    parse_positive_duration("--heartbeat-timeout", &value()?)?
            }
            "--monitor-interval" => {
                config.monitor_interval = parse_positive_duration("--monitor-interval", &value()?)?
            }
            "--shutdown-grace" => {
                config.shutdown_grace = parse_duration(&value()?)
                    .map_err(|reason| format!("invalid value for --shutdown-grace: {reason}"))?
            }
            "--threads" => config.threads = parse_at_least_one("--threads", &value()?)?,
            "--max-workers" => config.max_workers = parse_at_least_one("--max-workers", &value()?)?,
            _ => {
                return Err(format!(
                    "unknown flag {arg:?}; run with --help to list flags"
                ))
            }
        }
    }
    Ok(Command::Run(config))
}

/// Parses a duration such as `500ms`, `30s`, `2m`, `1h`, or a bare number
/// of seconds, which may have a fractional part.
///
/// # Errors
///
/// A message quoting the value when it is empty, negative, not a number or
/// has an unknown unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "{text:?} is not a duration; use a number with ms, s, m or h, such as 500ms or 30s"
            ))
        }
    };
    let amount: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration; use a number with ms, s, m or h, such as 500ms or 30s")
    })?;
    Duration::try_from_secs_f64(amount * seconds_per_unit)
        .map_err(|_| format!("{text:?} is out of range"))
}

fn parse_positive_duration(flag: &str, text: &str) -> Result<Duration, String> {
    let duration =
        parse_duration(text).map_err(|reason| format!("invalid value for {flag}: {reason}"))?;
    if duration.is_zero() {
        return Err(format!(
            "invalid value for {flag}: {text:?} must be greater than zero"
        ));
    }
    Ok(duration)
}

fn parse_number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("invalid value for {flag}: {text:?} is not a valid number in range"))
}

fn parse_at_least_one(flag: &str, text: &str) -> Result<usize, String> {
    let number: usize = parse_number(flag, text)?;
    if number == 0 {
        return Err(format!("invalid value for {flag}: must be at least 1"));
    }
    Ok(number)
}

fn parse_host(text: &str) -> Result<String, String> {
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid value for --host: {text:?} is not a host name or address"
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn run_config(args: &[&str]) -> Config {
        match parse_args(args.iter().copied()) {
            Ok(Command::Run(config)) => config,
            other => panic!("expected a run command, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_error_names(args: &[&str], flag: &str) {
        let message = parse_args(args.iter().copied()).unwrap_err();
        assert!(message.contains(flag), "{message}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn bad_durations_rejected() {
        for text in ["", "abc", "-5s", "10x", "5 s", "1e400", "ms", "1..2s"] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn defaults_without_flags() {
        assert_eq!(run_config(&[]), Config::default());
    }

    #[test]
    fn every_flag_sets_its_field() {
        let config = run_config(&[
            "--host",
            "0.0.0.0",
            "--port=0",
            "--heartbeat-timeout",
            "90s",
            "--monitor-interval",
            "500ms",
            "--threads",
            "3",
            "--max-workers",
            "10",
            "--shutdown-grace",
            "2s",
        ]);
        assert_eq!(config.host, "0.0.0.0");
        assert_eq!(config.port, 0);
        assert_eq!(config.heartbeat_timeout, Duration::from_secs(90));
        assert_eq!(config.monitor_interval, Duration::from_millis(500));
        assert_eq!(config.threads, 3);
        assert_eq!(config.max_workers, 10);
        assert_eq!(config.shutdown_grace, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert_error_names(&["--port", "70000"], "--port");
        assert_error_names(&["--port"], "--port");
        assert_error_names(&["--heartbeat-timeout", "soon"], "--heartbeat-timeout");
        assert_error_names(&["--monitor-interval", "0s"], "--monitor-interval");
        assert_error_names(&["--threads", "0"], "--threads");
        assert_error_names(&["--max-workers", "-1"], "--max-workers");
        assert_error_names(&["--host", ""], "--host");
        assert_error_names(&["--bogus"], "--bogus");
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_args(["--help"]), Ok(Command::Help));
        assert_eq!(parse_args(["-h"]), Ok(Command::Help));
        assert_eq!(parse_args(["--version"]), Ok(Command::Version));
    }
}
