//! The set of plugins a host serves, and how requests are routed to them.
//!
//! A [`Catalog`] is immutable: changing the plugins builds a new one and swaps it in
//! whole (see [`crate::plugin::Plugins`]), so a request that looked up its handler
//! keeps calling the code it started with.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::{
    CommandHandler, Description, Plugin, PluginCode, ProjectionHandler, ProjectionMode,
    QueryHandler,
};

/// Where a command goes.
#[derive(Debug, Clone)]
pub struct CommandRoute {
    pub plugin: String,
    pub aggregate_type: String,
    /// The handler's code digest: aggregate states cached under another digest are stale.
    pub digest: String,
    pub handler: Arc<CommandHandler>,
}

/// A projection the host should run.
#[derive(Debug, Clone)]
pub struct ProjectionRoute {
    pub plugin: String,
    pub digest: String,
    pub schema_version: u32,
    pub mode: ProjectionMode,
    /// The event types it consumes.
    pub handles: HashSet<String>,
    pub handler: Arc<ProjectionHandler>,
}

/// Where a query goes.
#[derive(Debug, Clone)]
pub struct QueryRoute {
    pub plugin: String,
    pub digest: String,
    /// The projections the handler reads.
    pub reads: Vec<String>,
    pub handler: Arc<QueryHandler>,
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
    /// The file each served plugin came from.
    files: BTreeMap<String, PathBuf>,
    commands: HashMap<String, Arc<CommandRoute>>,
    projections: BTreeMap<String, Arc<ProjectionRoute>>,
    queries: HashMap<String, Arc<QueryRoute>>,
    failures: Vec<LoadFailure>,
}

impl Catalog {
    /// Builds a catalog from loaded plugins. Plugins that `previous` served go first,
    /// so a newcomer whose name, commands or queries clash with a served plugin is the
    /// one refused (listed among the failures), whatever the files are called; among
    /// newcomers, the first file by name wins.
    pub fn build(
        loaded: impl IntoIterator<Item = (PathBuf, Plugin)>,
        mut failures: Vec<LoadFailure>,
        previous: &Catalog,
    ) -> Catalog {
        let mut loaded: Vec<(PathBuf, Plugin)> = loaded.into_iter().collect();
        loaded.sort_by_key(|(file, plugin)| {
            let incumbent = previous.file_of(&plugin.description.name) == Some(file);
            (!incumbent, file.clone())
        });
        let mut catalog = Catalog::default();
        for (file, plugin) in loaded {
            let name = plugin.description.name.clone();
            match catalog.insert(plugin) {
                Ok(()) => {
                    catalog.files.insert(name, file);
                }
                Err(error) => {
                    tracing::error!(file = %file.display(), %error, "plugin refused");
                    failures.push(LoadFailure { file, error });
                }
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
            PluginCode::Projection(handler) => {
                self.projections.insert(
                    name.clone(),
                    Arc::new(ProjectionRoute {
                        plugin: name.clone(),
                        digest: plugin.digest.clone(),
                        schema_version: plugin.description.schema_version.unwrap_or(1),
                        mode: plugin.description.mode.unwrap_or(ProjectionMode::Async),
                        handles: plugin.description.handles.iter().cloned().collect(),
                        handler: handler.clone(),
                    }),
                );
            }
            PluginCode::QueryHandler(handler) => {
                if let Some(taken) = plugin
                    .description
                    .handles
                    .iter()
                    .find(|query| self.queries.contains_key(*query))
                {
                    return Err(format!(
                        "query {taken} is already answered by {}",
                        self.queries[taken].plugin
                    ));
                }
                let route = Arc::new(QueryRoute {
                    plugin: name.clone(),
                    digest: plugin.digest.clone(),
                    reads: plugin.description.reads.clone().unwrap_or_default(),
                    handler: handler.clone(),
                });
                for query in &plugin.description.handles {
                    self.queries.insert(query.clone(), route.clone());
                }
            }
        }
        self.plugins.insert(name, plugin);
        Ok(())
    }

    /// The served plugin named `name`.
    pub fn plugin(&self, name: &str) -> Option<&Plugin> {
        self.plugins.get(name)
    }

    /// The plugin (other than `name`) that already serves one of `plugin`'s commands
    /// or queries, if any.
    pub fn rival_of(&self, plugin: &Plugin) -> Option<String> {
        let name = &plugin.description.name;
        plugin.description.handles.iter().find_map(|handled| {
            let holder = match &plugin.code {
                PluginCode::CommandHandler(_) => self.commands.get(handled).map(|r| &r.plugin),
                PluginCode::QueryHandler(_) => self.queries.get(handled).map(|r| &r.plugin),
                PluginCode::Projection(_) => None,
            }?;
            (holder != name).then(|| format!("{handled} is served by {holder}"))
        })
    }

    /// The file that serves plugin `name`.
    pub fn file_of(&self, name: &str) -> Option<&PathBuf> {
        self.files.get(name)
    }

    pub fn command(&self, name: &str) -> Option<&Arc<CommandRoute>> {
        self.commands.get(name)
    }

    pub fn query(&self, name: &str) -> Option<&Arc<QueryRoute>> {
        self.queries.get(name)
    }

    /// Every query name with its route, sorted by name.
    pub fn queries(&self) -> Vec<(&str, &Arc<QueryRoute>)> {
        let mut queries: Vec<_> = self
            .queries
            .iter()
            .map(|(name, route)| (name.as_str(), route))
            .collect();
        queries.sort_by_key(|(name, _)| *name);
        queries
    }

    /// The projections to run, by name.
    pub fn projections(&self) -> impl Iterator<Item = &Arc<ProjectionRoute>> {
        self.projections.values()
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
