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
