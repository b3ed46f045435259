//! A job's `backend`: the string a definition writes (`cpu`, `wgpu:1`, `auto`…) and the value
//! it stands for. Whether this server has that device is [`super::Backends`]'s to say.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a job trains, as its definition names it.
///
/// In JSON it is a string: `cpu` (Burn's flex backend), `wgpu` (the first hardware
/// GPU, else a software adapter), `wgpu:N` (device N of `GET /backends`) or `auto` (the first
/// hardware GPU, else `cpu`). The device a job got is its `backend` once it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum BackendKind {
    /// Burn's flex backend: pure-Rust CPU kernels.
    Cpu,
    /// Burn's WGPU backend, on one named device or on the best one.
    Wgpu(Option<u32>),
    /// A hardware GPU when the server has one, else the CPU.
    Auto,
}

impl BackendKind {
    /// The forms a job may write, for error messages.
    pub const SYNTAX: &str = "cpu, wgpu, wgpu:N (a device of GET /backends) or auto";

    /// Reads the name a job definition uses.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cpu" => Some(Self::Cpu),
            "wgpu" => Some(Self::Wgpu(None)),
            "auto" => Some(Self::Auto),
            _ => {
                let n = name.strip_prefix("wgpu:")?;
                // Digits only: no sign, no spaces, no leading `+`.
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                n.parse().ok().map(|n| Self::Wgpu(Some(n)))
            }
        }
    }

    /// The name a job definition uses for this backend.
    pub fn name(self) -> String {
        match self {
            Self::Cpu => "cpu".to_string(),
            Self::Wgpu(None) => "wgpu".to_string(),
            Self::Wgpu(Some(n)) => format!("wgpu:{n}"),
            Self::Auto => "auto".to_string(),
        }
    }
}

impl From<BackendKind> for String {
    fn from(kind: BackendKind) -> Self {
        kind.name()
    }
}

impl TryFrom<String> for BackendKind {
    type Error = String;
    /// Reads a stored definition. `ndarray`, a CPU backend kiln no longer builds, reads as `cpu`
    /// so that jobs stored before its removal still list and resume; a new definition naming it
    /// is refused by validation, which uses [`BackendKind::parse`].
    fn try_from(name: String) -> Result<Self, String> {
        if name == "ndarray" {
            return Ok(Self::Cpu);
        }
        Self::parse(&name).ok_or_else(|| format!("backend must be one of {} (got {name:?})", Self::SYNTAX))
    }
}

impl utoipa::PartialSchema for BackendKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^(cpu|wgpu|wgpu:[0-9]+|auto)$"))
            .description(Some(format!("Where the job trains: {}.", Self::SYNTAX)))
            .examples([serde_json::json!("cpu"), serde_json::json!("wgpu:0")])
            .into()
    }
}

impl ToSchema for BackendKind {}
