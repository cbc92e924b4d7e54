//! The projections' lifecycle state, kept in `lifecycle.json` beside their databases
//! so it survives restarts: which version of each projection is active, which are
//! being built, what rollback returns to, and each projection's policies.
//!
//! The file is replaced atomically (written beside, then renamed). Checkpoints and
//! parked events are not here: they live in each version's own database, committed
//! with the data they describe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plugin::ProjectionMode;

/// One storage of one projection version: a schema version and a generation (a
/// rebuild makes a new generation of the same version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionKey {
    pub version: u32,
    pub generation: u32,
}

impl std::fmt::Display for VersionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.g{}", self.version, self.generation)
    }
}

/// When a version that has caught up takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cutover {
    /// As soon as it has caught up.
    #[default]
    Auto,
    /// Only when promoted.
    Manual,
}

/// What happens to an event that still fails after the last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The projection halts at the event until a fix is deployed or it is resumed.
    #[default]
    Stop,
    /// The event is parked with its error and the projection moves on.
    Skip,
}

/// A projection's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policy {
    #[serde(default)]
    pub cutover: Cutover,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Attempts at one event before `on_failure` applies.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_attempts() -> u32 {
    5
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            cutover: Cutover::default(),
            on_failure: OnFailure::default(),
            max_attempts: default_attempts(),
        }
    }
}

/// One version's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub key: VersionKey,
    /// The code that builds it: the plugin digest (found in the plugin archive when
    /// the plugin file has moved on).
    pub digest: String,
    pub mode: ProjectionMode,
    pub handles: Vec<String>,
    pub created_at: String,
    /// Built to take over: becomes active when it has caught up (automatically, or on
    /// promotion under the manual policy).
    #[serde(default)]
    pub pending: bool,
    /// For a rebuild: the generation it replaces, deleted after the swap.
    #[serde(default)]
    pub rebuild_of: Option<VersionKey>,
}

/// One projection's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProjectionState {
    /// The version queries read.
    pub active: Option<VersionKey>,
    /// What rollback returns to.
    pub previous: Option<VersionKey>,
    /// Set by rollback and promotion: no automatic cutover until a new version comes.
    #[serde(default)]
    pub held: bool,
    #[serde(default)]
    pub policy: Policy,
    pub versions: Vec<VersionRecord>,
    /// Versions an operator retired, with the code that built them: not built again
    /// until that code changes.
    #[serde(default)]
    pub retired: Vec<(u32, String)>,
}

impl ProjectionState {
    pub fn record(&self, key: VersionKey) -> Option<&VersionRecord> {
        self.versions.iter().find(|r| r.key == key)
    }

    pub fn record_mut(&mut self, key: VersionKey) -> Option<&mut VersionRecord> {
        self.versions.iter_mut().find(|r| r.key == key)
    }

    /// The newest generation of schema version `version`.
    pub fn latest_generation(&self, version: u32) -> Option<&VersionRecord> {
        self.versions
            .iter()
            .filter(|r| r.key.version == version)
            .max_by_key(|r| r.key.generation)
    }
}

/// Every projection's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lifecycle {
    pub projections: BTreeMap<String, ProjectionState>,
}

/// Where the state is kept.
#[derive(Debug)]
pub struct LifecycleFile {
    path: PathBuf,
}

impl LifecycleFile {
    pub fn new(root: &Path) -> Self {
        LifecycleFile {
            path: root.join("lifecycle.json"),
        }
    }

    /// The saved state; an empty one if there is none yet.
    pub fn load(&self) -> std::io::Result<Lifecycle> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Lifecycle::default()),
            Err(error) => Err(error),
        }
    }

    pub fn save(&self, lifecycle: &Lifecycle) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let json = serde_json::to_vec_pretty(lifecycle).map_err(std::io::Error::other)?;
        let partial = self.path.with_extension("json.partial");
        std::fs::write(&partial, json)?;
        std::fs::rename(&partial, &self.path)
    }
}
