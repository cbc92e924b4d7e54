//! The set of plugins a host serves, and how requests are routed to them.
//!
//! A [`Catalog`] is immutable: changing the plugins builds a new one and swaps it in
//! whole (see [`crate::plugin::Plugins`]), so a request that looked up its handler
//! keeps calling the code it started with.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::{CommandHandler, Description, Plugin, PluginCode};

/// Where a command goes.
#[derive(Debug, Clone)]
pub struct CommandRoute {
    pub plugin: String,
    pub aggregate_type: String,
    /// The handler's code digest: aggregate states cached under another digest are stale.
    pub digest: String,
    pub handler: Arc<CommandHandler>,
}

/// A plugin file that is not being served, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFailure {
    pub file: PathBuf,
    pub error: String,
}

/// An immutable snapshot of the served plugins.
#[derive(Debug, Default)]
pub struct Catalog {
    plugins: BTreeMap<String, Plugin>,
    commands: HashMap<String, Arc<CommandRoute>>,
    failures: Vec<LoadFailure>,
}

impl Catalog {
    /// Builds a catalog from loaded plugins. A plugin whose name or handled commands
    /// clash with one already taken is refused and listed among the failures, so
    /// the outcome never depends on which of two clashing files happened to win.
    pub fn build(
        loaded: impl IntoIterator<Item = (PathBuf, Plugin)>,
        mut failures: Vec<LoadFailure>,
    ) -> Catalog {
        let mut catalog = Catalog::default();
        for (file, plugin) in loaded {
            if let Err(error) = catalog.insert(plugin) {
                tracing::error!(file = %file.display(), %error, "plugin refused");
                failures.push(LoadFailure { file, error });
            }
        }
        catalog.failures = failures;
        catalog
    }

    fn insert(&mut self, plugin: Plugin) -> Result<(), String> {
        let name = plugin.description.name.clone();
        if self.plugins.contains_key(&name) {
            return Err(format!("another plugin is already named {name}"));
        }
        match &plugin.code {
            PluginCode::CommandHandler(handler) => {
                if let Some(taken) = plugin
                    .description
                    .handles
                    .iter()
                    .find(|command| self.commands.contains_key(*command))
                {
                    return Err(format!(
                        "command {taken} is already handled by {}",
                        self.commands[taken].plugin
                    ));
                }
                let route = Arc::new(CommandRoute {
                    plugin: name.clone(),
                    aggregate_type: plugin
                        .description
                        .aggregate_type
                        .clone()
                        .unwrap_or_default(),
                    digest: plugin.digest.clone(),
                    handler: handler.clone(),
                });
                for command in &plugin.description.handles {
                    self.commands.insert(command.clone(), route.clone());
                }
            }
        }
        self.plugins.insert(name, plugin);
        Ok(())
    }

    pub fn command(&self, name: &str) -> Option<&Arc<CommandRoute>> {
        self.commands.get(name)
    }

    /// The served plugins, by name.
    pub fn plugins(&self) -> impl Iterator<Item = (&Description, &str)> {
        self.plugins
            .values()
            .map(|plugin| (&plugin.description, plugin.digest.as_str()))
    }

    /// The files that failed to load, with their reasons.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }
}
