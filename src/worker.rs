//! Plain worker types shared by the registry, validation and the service.

/// Capabilities a worker reports at registration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub gpu_enabled: bool,
    pub max_batch_size: i32,
    pub device_type: String,
    pub supported_models: Vec<String>,
}

/// A registration request after decoding: who the worker is and where it serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSpec {
    pub id: String,
    pub host: String,
    /// 0 when the worker serves nothing.
    pub port: i32,
    pub capabilities: Capabilities,
}

/// The latest status a worker sent with a heartbeat. Stored for display;
/// liveness never depends on it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerStatus {
    pub current_job_id: String,
    pub cpu_usage: f32,
    pub memory_usage: f32,
    pub gpu_usage: f32,
    pub completed_batches: i32,
}

/// Selection of workers by GPU capability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GpuFilter {
    #[default]
    Any,
    GpuOnly,
    CpuOnly,
}

/// Selects workers by capability; an empty field matches every worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerFilter {
    pub device_type: String,
    pub gpu: GpuFilter,
    pub supported_model: String,
}

impl WorkerFilter {
    /// Returns whether the filter selects every worker.
    pub fn is_empty(&self) -> bool {
        self.device_type.is_empty() && self.gpu == GpuFilter::Any && self.supported_model.is_empty()
    }

    /// Returns whether a worker with these capabilities is selected.
    pub fn matches(&self, capabilities: &Capabilities) -> bool {
        let device_matches =
            self.device_type.is_empty() || self.device_type == capabilities.device_type;
        let gpu_matches = match self.gpu {
            GpuFilter::Any => true,
            GpuFilter::GpuOnly => capabilities.gpu_enabled,
            GpuFilter::CpuOnly => !capabilities.gpu_enabled,
        };
        let model_matches = self.supported_model.is_empty()
            || capabilities
                .supported_models
                .contains(&self.supported_model);
        device_matches && gpu_matches && model_matches
    }
}
