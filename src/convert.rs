//! Conversions between protobuf messages and the plain worker types.

use protobuf::MessageField;

use crate::proto::master as pb;
use crate::worker::{Capabilities, WorkerSpec, WorkerStatus};

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
