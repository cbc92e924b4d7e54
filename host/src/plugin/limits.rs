//! The limits plugin calls run under: the host's defaults per kind, the overrides for
//! single plugins, and the resolved [`CallLimits`] one plugin's calls get.
//!
//! Pure data: nothing here touches wasmtime. The resolution is done once per loaded
//! plugin version (after `describe` names it), so a call never looks up its limits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::world::PluginKind;

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long one call of a command handler may run.
    pub command_deadline: Duration,
    /// How long one call of a projection (`setup`, `apply-batch`, or a 0.1.0 `apply`)
    /// may run.
    pub projection_deadline: Duration,
    /// How long one call of a query handler may run.
    pub query_deadline: Duration,
    /// How long `describe` may run when a plugin is loaded.
    pub describe_deadline: Duration,
    /// The most linear memory one instance may have, in bytes.
    pub max_memory: usize,
    /// The largest a projection version's database may grow, in bytes.
    pub max_disk: u64,
    /// The most memory SQLite may hold in this process, for guests and host alike, in
    /// bytes (SQLite's hard heap limit: past it a statement fails).
    pub sqlite_heap: u64,
    /// Use the pooling allocator when the address space allows it.
    pub pooling: bool,
    /// How many calls one command handler or query handler instance may serve (commands
    /// or queries) before it is dropped (it is dropped at once after a failed call). 0
    /// or 1: a fresh instance for every call. Globals of a plugin survive between the
    /// calls an instance serves.
    pub instance_reuse: u32,
    /// Overrides for single plugins, by plugin name.
    pub per_plugin: HashMap<String, PluginLimits>,
    /// The `tessera` executable that compiles components in a child process (its
    /// `compile-component` command), so that the compiler's working set, hundreds of
    /// MiB for a componentize-js or componentize-py component, and whatever a hostile
    /// component does to the compiler, stay out of the host process. `None`: in this
    /// process (what a library user without the binary gets).
    pub compiler: Option<PathBuf>,
}

/// Limits for one plugin that differ from its kind's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginLimits {
    /// How long one call may run.
    pub deadline: Option<Duration>,
    /// The most linear memory one instance may have, in bytes.
    pub max_memory: Option<usize>,
    /// For a projection: the largest its database may grow, in bytes.
    pub max_disk: Option<u64>,
    /// For a command handler or a query handler: how many calls one instance may serve
    /// (0: fresh instances only).
    pub reuse: Option<u32>,
}

/// The limits one call runs under.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub deadline: Duration,
    pub max_memory: usize,
    pub max_disk: u64,
    /// How many calls in sequence one instance may serve (command and query handlers).
    pub reuse: u32,
}

impl Limits {
    /// What `describe` runs under, before the plugin's name is known.
    pub(super) fn describing(&self) -> CallLimits {
        CallLimits {
            deadline: self.describe_deadline,
            max_memory: self.max_memory,
            max_disk: self.max_disk,
            reuse: 0,
        }
    }

    /// What the calls of plugin `name` of `kind` run under.
    pub(super) fn for_plugin(&self, name: &str, kind: PluginKind) -> CallLimits {
        let default = match kind {
            PluginKind::CommandHandler => self.command_deadline,
            PluginKind::Projection => self.projection_deadline,
            PluginKind::QueryHandler => self.query_deadline,
        };
        let custom = self.per_plugin.get(name).cloned().unwrap_or_default();
        CallLimits {
            deadline: custom.deadline.unwrap_or(default),
            max_memory: custom.max_memory.unwrap_or(self.max_memory),
            max_disk: custom.max_disk.unwrap_or(self.max_disk),
            reuse: match kind {
                PluginKind::CommandHandler | PluginKind::QueryHandler => {
                    custom.reuse.unwrap_or(self.instance_reuse)
                }
                // A projection's batch is one call per instance, so there is nothing
                // to reuse it for.
                PluginKind::Projection => 0,
            },
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            command_deadline: Duration::from_secs(1),
            projection_deadline: Duration::from_secs(1),
            query_deadline: Duration::from_secs(1),
            describe_deadline: Duration::from_secs(1),
            max_memory: 64 << 20,
            max_disk: 1 << 30,
            sqlite_heap: 256 << 20,
            pooling: true,
            instance_reuse: 1000,
            per_plugin: HashMap::new(),
            compiler: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct deadlines per kind, so a test can tell which default was taken.
    fn limits() -> Limits {
        Limits {
            command_deadline: Duration::from_millis(100),
            projection_deadline: Duration::from_millis(200),
            query_deadline: Duration::from_millis(300),
            describe_deadline: Duration::from_millis(400),
            instance_reuse: 7,
            ..Limits::default()
        }
    }

    #[test]
    fn each_kind_gets_its_own_default_deadline() {
        let limits = limits();
        let deadline = |kind| limits.for_plugin("bank", kind).deadline;
        assert_eq!(
            deadline(PluginKind::CommandHandler),
            Duration::from_millis(100)
        );
        assert_eq!(deadline(PluginKind::Projection), Duration::from_millis(200));
        assert_eq!(
            deadline(PluginKind::QueryHandler),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn command_and_query_handlers_reuse_instances_projections_do_not() {
        let limits = limits();
        let reuse = |kind| limits.for_plugin("bank", kind).reuse;
        assert_eq!(reuse(PluginKind::CommandHandler), 7);
        assert_eq!(reuse(PluginKind::Projection), 0);
        assert_eq!(reuse(PluginKind::QueryHandler), 7);
    }

    #[test]
    fn a_plugins_overrides_win_over_the_defaults() {
        let mut limits = limits();
        limits.per_plugin.insert(
            "bank".into(),
            PluginLimits {
                deadline: Some(Duration::from_secs(5)),
                max_memory: Some(1 << 20),
                max_disk: Some(1 << 10),
                reuse: Some(0),
            },
        );
        let bank = limits.for_plugin("bank", PluginKind::CommandHandler);
        assert_eq!(bank.deadline, Duration::from_secs(5));
        assert_eq!(bank.max_memory, 1 << 20);
        assert_eq!(bank.max_disk, 1 << 10);
        assert_eq!(bank.reuse, 0);

        // Another plugin keeps the defaults.
        let other = limits.for_plugin("shop", PluginKind::CommandHandler);
        assert_eq!(other.deadline, Duration::from_millis(100));
        assert_eq!(other.max_memory, Limits::default().max_memory);
        assert_eq!(other.reuse, 7);
    }

    #[test]
    fn a_reuse_override_does_not_make_a_projection_reuse_instances() {
        let mut limits = limits();
        limits.per_plugin.insert(
            "totals".into(),
            PluginLimits {
                reuse: Some(50),
                ..PluginLimits::default()
            },
        );
        assert_eq!(limits.for_plugin("totals", PluginKind::Projection).reuse, 0);
    }

    #[test]
    fn describe_runs_under_the_describe_deadline_without_reuse() {
        let limits = limits();
        let describing = limits.describing();
        assert_eq!(describing.deadline, Duration::from_millis(400));
        assert_eq!(describing.max_memory, limits.max_memory);
        assert_eq!(describing.max_disk, limits.max_disk);
        assert_eq!(describing.reuse, 0);
    }
}
