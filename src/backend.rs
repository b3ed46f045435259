//! Compute backends: turning a job's `backend` choice into a Burn `Device`.
//!
//! Burn 0.22 picks the backend at run time through its `Device`, so the training code has no
//! backend type parameter: this module is the one place that knows which devices exist. The
//! WGPU backend will be added here.

use burn::tensor::Device;

use crate::jobs::spec::BackendKind;

/// A device a job trains on, with the name the API shows.
pub struct Resolved {
    /// The plain (inference) device.
    pub device: Device,
    /// Human-readable description, e.g. `cpu (burn-flex)`.
    pub name: String,
}

/// The device for `kind`.
pub fn resolve(kind: BackendKind) -> Resolved {
    match kind {
        BackendKind::Cpu => Resolved { device: Device::flex(), name: "cpu (burn-flex)".to_string() },
        #[allow(deprecated)] // kept on purpose, to measure it against flex
        BackendKind::Ndarray => {
            Resolved { device: Device::ndarray(), name: "cpu (burn-ndarray)".to_string() }
        }
    }
}
