//! Validation of worker input before anything is stored.
//!
//! Every error names the field and quotes the offending value, shortened.

use crate::error::Error;
use crate::worker::{Capabilities, WorkerSpec, WorkerStatus};

/// Maximum length of a worker id in bytes.
pub const MAX_WORKER_ID_BYTES: usize = 256;
/// Maximum length of a host in bytes: the longest DNS name.
pub const MAX_HOST_BYTES: usize = 255;
/// Maximum length of a device type in bytes.
pub const MAX_DEVICE_TYPE_BYTES: usize = 64;
/// Maximum number of supported models per worker.
pub const MAX_SUPPORTED_MODELS: usize = 64;
/// Maximum length of one supported model name in bytes.
pub const MAX_MODEL_NAME_BYTES: usize = 128;
/// Maximum length of a job id in a heartbeat status, in bytes.
pub const MAX_JOB_ID_BYTES: usize = 256;
/// Highest TCP port number.
pub const MAX_PORT: i32 = 65_535;

/// Checks a registration request.
///
/// # Errors
///
/// `Error::InvalidArgument` naming the first field that breaks a rule.
pub fn validate_spec(spec: &WorkerSpec) -> Result<(), Error> {
    validate_worker_id(&spec.id)?;
    validate_host(&spec.host)?;
    if !(0..=MAX_PORT).contains(&spec.port) {
        return Err(Error::invalid(
            "port",
            &spec.port.to_string(),
            format!("must be between 0 and {MAX_PORT}"),
        ));
    }
    validate_capabilities(&spec.capabilities)
}

/// Checks a worker id: 1 to 256 bytes with no control characters.
///
/// # Errors
///
/// `Error::InvalidArgument` for field `worker_id`.
pub fn validate_worker_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::invalid("worker_id", id, "must not be empty"));
    }
    check_max_bytes("worker_id", id, MAX_WORKER_ID_BYTES)?;
    check_no_control("worker_id", id)
}

/// Checks the status sent with a heartbeat. Only the job id is bounded,
/// because it is the one field whose size the sender chooses.
///
/// # Errors
///
/// `Error::InvalidArgument` for field `status.current_job_id`.
pub fn validate_status(status: &WorkerStatus) -> Result<(), Error> {
    check_max_bytes(
        "status.current_job_id",
        &status.current_job_id,
        MAX_JOB_ID_BYTES,
    )?;
    check_no_control("status.current_job_id", &status.current_job_id)
}

fn validate_host(host: &str) -> Result<(), Error> {
    check_max_bytes("host", host, MAX_HOST_BYTES)?;
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            "host",
            host,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

fn validate_capabilities(capabilities: &Capabilities) -> Result<(), Error> {
    if capabilities.max_batch_size < 0 {
        return Err(Error::invalid(
            "capabilities.max_batch_size",
            &capabilities.max_batch_size.to_string(),
            "must not be negative",
        ));
    }
    check_max_bytes(
        "capabilities.device_type",
        &capabilities.device_type,
        MAX_DEVICE_TYPE_BYTES,
    )?;
    check_no_control("capabilities.device_type", &capabilities.device_type)?;

    let models = &capabilities.supported_models;
    if models.len() > MAX_SUPPORTED_MODELS {
        return Err(Error::invalid(
            "capabilities.supported_models",
            &format!("{} entries", models.len()),
            format!("at most {MAX_SUPPORTED_MODELS} entries are allowed"),
        ));
    }
    for model in models {
        check_max_bytes("capabilities.supported_models", model, MAX_MODEL_NAME_BYTES)?;
        check_no_control("capabilities.supported_models", model)?;
    }
    Ok(())
}

fn check_max_bytes(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.len() > max {
        return Err(Error::invalid(
            field,
            value,
            format!("is {} bytes, at most {max} are allowed", value.len()),
        ));
    }
    Ok(())
}

fn check_no_control(field: &'static str, value: &str) -> Result<(), Error> {
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            value,
            "must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WorkerSpec {
        WorkerSpec {
            id: "worker-1".to_string(),
            host: "gpu-node-7.cluster.local".to_string(),
            port: 50052,
            capabilities: Capabilities {
                gpu_enabled: true,
                max_batch_size: 128,
                device_type: "cuda".to_string(),
                supported_models: vec!["resnet50".to_string()],
            },
        }
    }

    #[track_caller]
    fn assert_rejected(spec: &WorkerSpec, field: &str) {
        match validate_spec(spec) {
            Err(Error::InvalidArgument { field: actual, .. }) => assert_eq!(actual, field),
            other => panic!("expected {field} to be rejected, got {other:?}"),
        }
    }

    #[test]
    fn valid_spec_passes() {
        assert!(validate_spec(&spec()).is_ok());
    }

    #[test]
    fn boundary_values_pass() {
        let mut edge = spec();
        edge.id = "x".repeat(MAX_WORKER_ID_BYTES);
        edge.host = "h".repeat(MAX_HOST_BYTES);
        edge.port = MAX_PORT;
        edge.capabilities.device_type = "d".repeat(MAX_DEVICE_TYPE_BYTES);
        edge.capabilities.supported_models =
            vec!["m".repeat(MAX_MODEL_NAME_BYTES); MAX_SUPPORTED_MODELS];
        edge.capabilities.max_batch_size = 0;
        assert!(validate_spec(&edge).is_ok());

        let mut no_port = spec();
        no_port.port = 0;
        no_port.host = String::new();
        assert!(validate_spec(&no_port).is_ok());
    }

    #[test]
    fn worker_id_rules() {
        for id in ["", "a\nb", "tab\there", "bell\u{7}"] {
            let mut bad = spec();
            bad.id = id.to_string();
            assert_rejected(&bad, "worker_id");
        }
        let mut long = spec();
        long.id = "x".repeat(MAX_WORKER_ID_BYTES + 1);
        assert_rejected(&long, "worker_id");
    }

    #[test]
    fn host_rules() {
        for host in ["a b", "h\tx", "line\n", &"h".repeat(MAX_HOST_BYTES + 1)] {
            let mut bad = spec();
            bad.host = host.to_string();
            assert_rejected(&bad, "host");
        }
    }

    #[test]
    fn port_rules() {
        for port in [-1, MAX_PORT + 1, i32::MIN, i32::MAX] {
            let mut bad = spec();
            bad.port = port;
            assert_rejected(&bad, "port");
        }
    }

    #[test]
    fn capability_rules() {
        let mut batch = spec();
        batch.capabilities.max_batch_size = -1;
        assert_rejected(&batch, "capabilities.max_batch_size");

        let mut device = spec();
        device.capabilities.device_type = "d".repeat(MAX_DEVICE_TYPE_BYTES + 1);
        assert_rejected(&device, "capabilities.device_type");

        let mut many = spec();
        many.capabilities.supported_models = vec!["m".to_string(); MAX_SUPPORTED_MODELS + 1];
        assert_rejected(&many, "capabilities.supported_models");

        let mut long_model = spec();
        long_model.capabilities.supported_models = vec!["m".repeat(MAX_MODEL_NAME_BYTES + 1)];
        assert_rejected(&long_model, "capabilities.supported_models");
    }

    #[test]
    fn status_job_id_rules() {
        let ok = WorkerStatus {
            current_job_id: "j".repeat(MAX_JOB_ID_BYTES),
            ..WorkerStatus::default()
        };
        assert!(validate_status(&ok).is_ok());
        let long = WorkerStatus {
            current_job_id: "j".repeat(MAX_JOB_ID_BYTES + 1),
            ..WorkerStatus::default()
        };
        assert!(matches!(
            validate_status(&long),
            Err(Error::InvalidArgument {
                field: "status.current_job_id",
                ..
            })
        ));
    }

    #[test]
    fn message_quotes_shortened_value() {
        let mut long = spec();
        long.id = "y".repeat(10_000);
        let message = validate_spec(&long).unwrap_err().to_string();
        assert!(message.contains("worker_id"), "{message}");
        assert!(message.contains("yyyy"), "{message}");
        assert!(message.contains("10000 bytes"), "{message}");
        assert!(message.len() < 300, "{message}");
    }
}
