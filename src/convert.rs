//! Conversions between protobuf messages and the plain worker types.

use std::time::Instant;

use protobuf::{EnumOrUnknown, MessageField};

use crate::error::Error;
use crate::events::{ChangeKind, MembershipEvent};
use crate::proto::master as pb;
use crate::registry::WorkerRecord;
use crate::worker::{Capabilities, GpuFilter, WorkerFilter, WorkerSpec, WorkerStatus};

/// Returns the plain registration carried by a request.
pub fn spec_from_request(request: pb::RegisterWorkerRequest) -> WorkerSpec {
    let capabilities = request
        .capabilities
        .into_option()
        .map(capabilities_from_proto)
        .unwrap_or_default();
    WorkerSpec {
        id: request.worker_id,
        host: request.host,
        port: request.port,
        capabilities,
    }
}

fn capabilities_from_proto(capabilities: pb::WorkerCapabilities) -> Capabilities {
    Capabilities {
        gpu_enabled: capabilities.gpu_enabled,
        max_batch_size: capabilities.max_batch_size,
        device_type: capabilities.device_type,
        supported_models: capabilities.supported_models,
    }
}

/// Returns the registration request that carries `spec`.
pub fn request_from_spec(spec: &WorkerSpec) -> pb::RegisterWorkerRequest {
    pb::RegisterWorkerRequest {
        worker_id: spec.id.clone(),
        host: spec.host.clone(),
        port: spec.port,
        capabilities: MessageField::some(capabilities_to_proto(&spec.capabilities)),
        ..Default::default()
    }
}

/// Returns the plain status carried by a heartbeat, if any.
pub fn status_from_proto(status: MessageField<pb::WorkerStatus>) -> Option<WorkerStatus> {
    status.into_option().map(|status| WorkerStatus {
        current_job_id: status.current_job_id,
        cpu_usage: status.cpu_usage,
        memory_usage: status.memory_usage,
        gpu_usage: status.gpu_usage,
        completed_batches: status.completed_batches,
    })
}

/// Returns the protobuf form of a worker record, with its silence measured at `now`.
pub fn worker_info(record: &WorkerRecord, now: Instant) -> pb::WorkerInfo {
    let silent_ms = u64::try_from(record.silent_for(now).as_millis()).unwrap_or(u64::MAX);
    pb::WorkerInfo {
        worker_id: record.id.to_string(),
        host: record.host.clone(),
        port: record.port,
        capabilities: MessageField::some(capabilities_to_proto(&record.capabilities)),
        last_status: match &record.last_status {
            Some(status) => MessageField::some(status_to_proto(status)),
            None => MessageField::none(),
        },
        incarnation: record.incarnation,
        registered_at_unix_ms: record.registered_at_unix_ms,
        ms_since_last_heartbeat: silent_ms,
        ..Default::default()
    }
}

/// Returns the event sent to watchers for one membership change.
pub fn event_to_proto(event: &MembershipEvent, now: Instant) -> pb::WorkerEvent {
    let kind = match event.kind {
        ChangeKind::Joined => pb::EventKind::JOINED,
        ChangeKind::Reregistered => pb::EventKind::REREGISTERED,
        ChangeKind::Left => pb::EventKind::LEFT,
        ChangeKind::Evicted => pb::EventKind::EVICTED,
    };
    pb::WorkerEvent {
        kind: EnumOrUnknown::new(kind),
        worker: MessageField::some(worker_info(&event.record, now)),
        membership_version: event.membership_version,
        ..Default::default()
    }
}

/// Returns a SNAPSHOT event for one worker present when a watch opened.
pub fn snapshot_event(
    record: &WorkerRecord,
    membership_version: u64,
    now: Instant,
) -> pb::WorkerEvent {
    pb::WorkerEvent {
        kind: EnumOrUnknown::new(pb::EventKind::SNAPSHOT),
        worker: MessageField::some(worker_info(record, now)),
        membership_version,
        ..Default::default()
    }
}

/// Returns the SYNCED event that separates the snapshot from live changes.
pub fn synced_event(membership_version: u64) -> pb::WorkerEvent {
    pb::WorkerEvent {
        kind: EnumOrUnknown::new(pb::EventKind::SYNCED),
        membership_version,
        ..Default::default()
    }
}

/// Returns the filter selected by a request's three filter fields.
///
/// # Errors
///
/// `Error::InvalidArgument` for field `gpu` when it contains an unknown value.
pub fn filter_from_proto(
    device_type: String,
    gpu: EnumOrUnknown<pb::GpuFilter>,
    supported_model: String,
) -> Result<WorkerFilter, Error> {
    let gpu = match gpu.enum_value() {
        Ok(pb::GpuFilter::ANY) => GpuFilter::Any,
        Ok(pb::GpuFilter::GPU_ONLY) => GpuFilter::GpuOnly,
        Ok(pb::GpuFilter::CPU_ONLY) => GpuFilter::CpuOnly,
        Err(unknown) => {
            return Err(Error::invalid(
                "gpu",
                &unknown.to_string(),
                "must be ANY (0), GPU_ONLY (1) or CPU_ONLY (2)",
            ))
        }
    };
    Ok(WorkerFilter {
        device_type,
        gpu,
        supported_model,
    })
}

/// Returns the protobuf form of a worker's capabilities.
pub fn capabilities_to_proto(capabilities: &Capabilities) -> pb::WorkerCapabilities {
    pb::WorkerCapabilities {
        gpu_enabled: capabilities.gpu_enabled,
        max_batch_size: capabilities.max_batch_size,
        device_type: capabilities.device_type.clone(),
        supported_models: capabilities.supported_models.clone(),
        ..Default::default()
    }
}

/// Returns the protobuf form of a worker's status.
pub fn status_to_proto(status: &WorkerStatus) -> pb::WorkerStatus {
    pb::WorkerStatus {
        current_job_id: status.current_job_id.clone(),
        cpu_usage: status.cpu_usage,
        memory_usage: status.memory_usage,
        gpu_usage: status.gpu_usage,
        completed_batches: status.completed_batches,
        ..Default::default()
    }
}
