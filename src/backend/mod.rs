//! Compute backends: which devices this server can train on, and turning a job's `backend`
//! choice into a Burn `Device`.
//!
//! Burn 0.22 picks the backend at run time through its `Device`, so the training code has no
//! backend type parameter: this module is the one place that knows which devices exist. The CPU
//! backend (`cpu`, Burn's flex) always exists. WGPU devices are
//! discovered once per process by [`Backends::from_config`]: each adapter is initialised once
//! with `Device::wgpu_options()…init()`, which reports a missing or broken adapter as an error
//! where the lazy `Device::wgpu(..)` would panic inside a device thread, and the initialised
//! device is shared by every job after (a runtime may be initialised only once per device).
//!
//! Each device is a [`Lane`] of the scheduler: CPU jobs and the jobs of each GPU wait in their
//! own lanes, so a queued GPU job waits for its device and not for CPU jobs.
//!
//! CubeCL keeps what it learns about a device (autotune results, compiled kernels) in a store
//! rooted at `--gpu-cache-dir`, so a restart does not tune again; see [`prepare_caches`] for the
//! drivers' own shader caches.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
use burn::tensor::wgpu::wgpu::DeviceType as WgpuType;
use burn::tensor::{Device, DeviceKind};
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::Config;

mod kind;

pub use kind::BackendKind;

/// The language WGPU kernels are compiled to on Vulkan: SPIR-V in a build with the `vulkan`
/// feature, WGSL (translated by naga) otherwise.
pub const SHADERS: &str = if cfg!(feature = "vulkan") { "spirv" } else { "wgsl" };

/// Where a job waits and runs: the CPU workers, or one GPU device's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Cpu,
    /// The GPU with this index in [`Backends::gpus`].
    Gpu(usize),
}

/// The lane's name in metrics: `cpu`, `gpu:0` ...
impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Gpu(index) => write!(f, "gpu:{index}"),
        }
    }
}

/// A device a job trains on, with the name the API shows.
pub struct Resolved {
    /// The plain (inference) device.
    pub device: Device,
    /// Human-readable description, e.g. `cpu (burn-flex)`.
    pub name: String,
}

/// What kind of adapter a WGPU device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GpuType {
    Discrete,
    Integrated,
    Virtual,
    /// A software rasterizer such as Mesa's llvmpipe: it runs, slowly, on the CPU.
    Software,
    Other,
}

impl GpuType {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discrete => "discrete",
            Self::Integrated => "integrated",
            Self::Virtual => "virtual",
            Self::Software => "software",
            Self::Other => "other",
        }
    }

    fn of(kind: WgpuType) -> Self {
        match kind {
            WgpuType::DiscreteGpu => Self::Discrete,
            WgpuType::IntegratedGpu => Self::Integrated,
            WgpuType::VirtualGpu => Self::Virtual,
            WgpuType::Cpu => Self::Software,
            WgpuType::Other => Self::Other,
        }
    }
}

/// One WGPU device as `GET /backends` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GpuInfo {
    /// What a job names in `backend` to train here, e.g. `wgpu:0`.
    pub id: String,
    /// The adapter's name, e.g. `NVIDIA H100 80GB HBM3` or `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: GpuType,
    /// The graphics API the device runs on: `vulkan`, `metal`, `dx12` or `gl`.
    pub api: String,
    /// The driver and its version, as the adapter reports them.
    pub driver: String,
    /// Whether jobs may use it: false when it was found but could not be initialised.
    pub usable: bool,
    /// Why it is not usable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A discovered WGPU device.
#[derive(Clone)]
struct Gpu {
    info: GpuInfo,
    device: Option<Device>,
}

/// The devices this server can train on.
#[derive(Clone, Default)]
pub struct Backends {
    gpus: Vec<Gpu>,
    /// Why discovery found nothing, if it failed rather than found no adapter.
    probe_error: Option<String>,
    wgpu_enabled: bool,
}

/// The WGPU devices of this process, discovered on first use.
static DISCOVERED: OnceLock<(Vec<Gpu>, Option<String>)> = OnceLock::new();

impl Backends {
    /// The CPU backends only: what a server started with `--wgpu false` has.
    pub fn cpu_only() -> Self {
        Self::default()
    }

    /// The backends `config` allows: the CPU ones, and the WGPU devices of this machine unless
    /// `--wgpu false`. Discovery runs once per process, so several servers in one process (the
    /// tests) share the devices; the CubeCL cache root is process-wide too, and the server started
    /// last sets it.
    pub fn from_config(config: &Config) -> Self {
        if !config.wgpu {
            return Self::cpu_only();
        }
        // CubeCL reads its configuration (cubecl.toml, CUBECL_* variables) once, on first use,
        // and loading it sets the cache root to its own default (`./target/environment` under a
        // Cargo project, else the user's cache dir): load it first, then point the root here.
        let _ = CubeClRuntimeConfig::get();
        burn::cubecl::environment::set_root(config.gpu_cache_dir().join("cubecl"));
        let (gpus, probe_error) = DISCOVERED.get_or_init(discover).clone();
        Self { gpus, probe_error, wgpu_enabled: true }
    }

    /// Indices of the GPUs jobs may use; each is a [`Lane::Gpu`].
    pub fn usable_gpus(&self) -> impl Iterator<Item = usize> + '_ {
        self.gpus.iter().enumerate().filter(|(_, g)| g.device.is_some()).map(|(i, _)| i)
    }

    /// The backends a job may ask for (as definitions name them: `cpu`, `auto`, `wgpu`,
    /// `wgpu:N`) that this server runs in `lane`: what a worker of that lane claims.
    pub fn accepts(&self, lane: Lane) -> Vec<String> {
        let mut kinds = vec![BackendKind::Cpu, BackendKind::Auto, BackendKind::Wgpu(None)];
        if let Lane::Gpu(g) = lane {
            kinds.push(BackendKind::Wgpu(Some(g as u32)));
        }
        kinds.into_iter().filter(|&k| self.lane(k) == Ok(lane)).map(BackendKind::name).collect()
    }

    /// The lane a job with `kind` waits in, or why this server cannot run it (naming what it
    /// can run).
    pub fn lane(&self, kind: BackendKind) -> Result<Lane, String> {
        let hardware = self.usable_gpus().find(|&i| self.gpus[i].info.kind != GpuType::Software);
        match kind {
            BackendKind::Cpu => Ok(Lane::Cpu),
            BackendKind::Auto => Ok(hardware.map_or(Lane::Cpu, Lane::Gpu)),
            BackendKind::Wgpu(None) => hardware
                .or_else(|| self.usable_gpus().next())
                .map(Lane::Gpu)
                .ok_or_else(|| format!("this server has no usable wgpu device; {}", self.choices())),
            BackendKind::Wgpu(Some(n)) => {
                let i = n as usize;
                match self.gpus.get(i) {
                    Some(gpu) if gpu.device.is_some() => Ok(Lane::Gpu(i)),
                    Some(gpu) => Err(format!(
                        "wgpu:{i} ({}) could not be initialised: {}; {}",
                        gpu.info.name,
                        gpu.info.error.as_deref().unwrap_or("unknown error"),
                        self.choices()
                    )),
                    None => Err(format!("this server has no device wgpu:{i}; {}", self.choices())),
                }
            }
        }
    }

    /// The device of `lane`.
    pub fn resolve(&self, lane: Lane) -> Resolved {
        match lane {
            Lane::Gpu(i) => {
                let gpu = &self.gpus[i];
                Resolved {
                    device: gpu.device.clone().expect("lanes exist only for usable devices"),
                    name: format!(
                        "wgpu:{i} ({}, {}, {})",
                        gpu.info.name,
                        gpu.info.kind.as_str(),
                        gpu.info.api
                    ),
                }
            }
            Lane::Cpu => Resolved { device: Device::flex(), name: "cpu (burn-flex)".to_string() },
        }
    }

    /// What this server can run, for `GET /backends`.
    pub fn describe(&self, workers: u32, gpu_jobs_per_device: u32) -> BackendsView {
        let cpu = |name: &str, description: &str| BackendView {
            name: name.to_string(),
            description: description.to_string(),
            concurrent_jobs: workers,
            devices: Vec::new(),
        };
        let mut backends = vec![cpu("cpu", "Burn's flex backend: pure-Rust CPU kernels")];
        if self.wgpu_enabled {
            backends.push(BackendView {
                name: "wgpu".to_string(),
                description: "Burn's WGPU backend (Vulkan, Metal, DX12) with kernel fusion and autotuning; \
                              name one device as wgpu:N"
                    .to_string(),
                concurrent_jobs: gpu_jobs_per_device,
                devices: self.gpus.iter().map(|g| g.info.clone()).collect(),
            });
        }
        let auto = match self.lane(BackendKind::Auto) {
            Ok(Lane::Gpu(i)) => format!("wgpu:{i}"),
            _ => "cpu".to_string(),
        };
        BackendsView { backends, auto, wgpu_probe_error: self.probe_error.clone() }
    }

    /// "it can run: cpu, wgpu:0 (…)", for error messages.
    fn choices(&self) -> String {
        let mut names = vec!["cpu".to_string()];
        for i in self.usable_gpus() {
            names.push(format!("wgpu:{i} ({})", self.gpus[i].info.name));
        }
        if !self.wgpu_enabled {
            names.push("(wgpu is off: --wgpu false)".to_string());
        }
        format!("it can run: {} (see GET /backends)", names.join(", "))
    }
}

/// `GET /backends`: every backend, its devices, and what `auto` picks.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackendsView {
    pub backends: Vec<BackendView>,
    /// The device a job with `"backend": "auto"` gets: the first hardware GPU, else `cpu`
    /// (a software adapter is slower than the CPU backend, so `auto` never picks one).
    pub auto: String,
    /// Why looking for WGPU devices failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wgpu_probe_error: Option<String>,
}

/// One backend.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackendView {
    /// What a job names in `backend`.
    pub name: String,
    pub description: String,
    /// Jobs that train at the same time: on the CPU in all, on a GPU per device.
    pub concurrent_jobs: u32,
    /// The WGPU devices found (empty for CPU backends).
    pub devices: Vec<GpuInfo>,
}

/// Points the GPU drivers' own shader caches (Mesa's, NVIDIA's) under `--gpu-cache-dir`, unless
/// the environment already names them, so a server whose data dir is a volume (a container) does
/// not compile its shaders again after a restart. Call before any other thread starts: it sets
/// environment variables.
pub fn prepare_caches(config: &Config) {
    if !config.wgpu {
        return;
    }
    let root = config.gpu_cache_dir();
    for (var, dir) in [("MESA_SHADER_CACHE_DIR", "mesa"), ("__GL_SHADER_DISK_CACHE_PATH", "nvidia")] {
        if std::env::var_os(var).is_none() {
            let path = root.join(dir);
            if std::fs::create_dir_all(&path).is_ok() {
                // SAFETY: called from `main` before the runtime or any other thread exists.
                unsafe { std::env::set_var(var, &path) };
            }
        }
    }
}

/// The largest index tried for each indexed adapter type.
const MAX_PER_TYPE: usize = 16;

/// Initialises every WGPU adapter of the machine once, without letting a driver's panic out.
fn discover() -> (Vec<Gpu>, Option<String>) {
    let started = std::time::Instant::now();
    let mut gpus = Vec::new();
    let mut error = None;
    // Each type counts its adapters from 0; a software adapter (`Cpu`) has no index.
    let kinds: [(fn(usize) -> DeviceKind, usize); 4] = [
        (DeviceKind::DiscreteGpu, MAX_PER_TYPE),
        (DeviceKind::IntegratedGpu, MAX_PER_TYPE),
        (DeviceKind::VirtualGpu, MAX_PER_TYPE),
        (|_| DeviceKind::Cpu, 1),
    ];
    'kinds: for (kind, count) in kinds {
        for n in 0..count {
            let id = format!("wgpu:{}", gpus.len());
            let tried = catch_unwind(AssertUnwindSafe(|| {
                Device::wgpu_options().device_kind(kind(n)).init_with_setup()
            }));
            let gpu = match tried {
                Ok(Ok((device, setup))) => {
                    let info = setup.adapter.get_info();
                    Gpu {
                        info: GpuInfo {
                            id,
                            name: info.name,
                            kind: GpuType::of(info.device_type),
                            api: format!("{:?}", info.backend).to_lowercase(),
                            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
                            usable: true,
                            error: None,
                        },
                        device: Some(device),
                    }
                }
                Ok(Err(burn::tensor::wgpu::WgpuInitError::AdapterUnavailable { .. })) => continue 'kinds,
                // Found but unusable: listed with its error; the next of its type is not tried.
                Ok(Err(e)) => {
                    let info = GpuInfo {
                        id,
                        name: format!("{:?}", kind(n)),
                        kind: GpuType::Other,
                        api: String::new(),
                        driver: String::new(),
                        usable: false,
                        error: Some(e.to_string()),
                    };
                    gpus.push(Gpu { info, device: None });
                    continue 'kinds;
                }
                Err(panic) => {
                    let what = crate::panics::message(panic.as_ref());
                    error = Some(format!("initialising {:?} panicked: {what}", kind(n)));
                    continue 'kinds;
                }
            };
            gpus.push(gpu);
        }
    }
    tracing::info!(
        devices = ?gpus.iter().map(|g| format!("{} {} ({}, {})", g.info.id, g.info.name, g.info.kind.as_str(), g.info.api)).collect::<Vec<_>>(),
        seconds = started.elapsed().as_secs_f64(),
        "wgpu devices discovered"
    );
    (gpus, error)
}

#[cfg(test)]
mod tests;
