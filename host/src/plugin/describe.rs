//! Asking a plugin what it is, and checking the answer against its world.
//!
//! `describe` is the first call a plugin gets: in a fresh instance, under the describe
//! limits, before anything of it is registered. Its answer is checked here
//! ([`check`]): names a person reads or a route matches on are short and plain, the
//! plugin handles something and nothing twice, and the kind it claims is the world it
//! implements. Only then is the plugin named after its answer and given its own limits.
//! Text from the plugin that ends up in an error is quoted and cut short ([`quote`]).

use std::collections::HashSet;

use serde::Serialize;

use super::bindings::types as wit;
use super::deadline::set_deadline;
use super::error::LoadError;
use super::linked::{Linked, World};
use super::world::{Contract, PluginKind};

/// What a plugin said about itself, checked against its world.
#[derive(Debug, Clone, Serialize)]
pub struct Description {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    /// The version of the contract it implements.
    pub contract: Contract,
    /// Command names, consumed event types, or query names.
    pub handles: Vec<String>,
    /// For a command handler: its aggregate type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate_type: Option<String>,
    /// For a projection: its read model's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// For a projection: when it is applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<ProjectionMode>,
    /// For a query handler: the projections it reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads: Option<Vec<String>>,
}

/// When a projection is applied relative to the commands that feed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectionMode {
    /// In the background; commands never wait.
    Async,
    /// Before a command's response is sent.
    Inline,
}

impl<B: World> Linked<B> {
    /// Calls `describe` in a fresh instance under the describe limits, checks the
    /// answer against the world, and from then on names the plugin after it and calls
    /// it under its own limits.
    pub(super) fn describe(&mut self) -> Result<Description, LoadError> {
        let mut store = self.caller.describe_store();
        set_deadline(&mut store, self.caller.limits.deadline);
        let mut timer = self.caller.timer(crate::metrics::Call::Describe);
        let bindings = self
            .instantiate(&mut store)
            .map_err(|e| self.caller.fail(e))?;
        let info = bindings
            .describe(&mut store)
            .map_err(|e| self.caller.fail(e))?;
        let description = check(info, B::KIND, self.contract())?;
        self.caller.rename(&description.name, B::KIND);
        timer.rename(&self.caller.name);
        Ok(description)
    }
}

/// Checks what every kind's description must satisfy, and that it describes a plugin
/// of `kind`.
fn check(
    info: wit::PluginInfo,
    kind: PluginKind,
    contract: Contract,
) -> Result<Description, LoadError> {
    let bad = |reason: String| Err(LoadError::BadDescription(reason));
    if !is_name(&info.name) {
        return bad(format!(
            "name {} must be 1-64 lowercase letters, digits or dashes",
            quote(&info.name)
        ));
    }
    if info.handles.is_empty() {
        return bad("it handles nothing".into());
    }
    let mut seen = HashSet::new();
    for handled in &info.handles {
        if handled.is_empty() || handled.len() > 128 || handled.contains('/') {
            return bad(format!("{} is not a valid name to handle", quote(handled)));
        }
        if !seen.insert(handled) {
            return bad(format!("{} is listed twice", quote(handled)));
        }
    }
    let mut description = Description {
        name: info.name,
        version: info.version,
        kind,
        contract,
        handles: info.handles,
        aggregate_type: None,
        schema_version: None,
        mode: None,
        reads: None,
    };
    let declared = match info.details {
        wit::PluginDetails::CommandHandler(details) => {
            if !is_name(&details.aggregate_type) {
                return bad(format!(
                    "aggregate type {} must be 1-64 lowercase letters, digits or dashes",
                    quote(&details.aggregate_type)
                ));
            }
            description.aggregate_type = Some(details.aggregate_type);
            PluginKind::CommandHandler
        }
        wit::PluginDetails::Projection(details) => {
            description.schema_version = Some(details.schema_version);
            description.mode = Some(match details.mode {
                wit::ProjectionMode::Async => ProjectionMode::Async,
                wit::ProjectionMode::Inline => ProjectionMode::Inline,
            });
            PluginKind::Projection
        }
        wit::PluginDetails::QueryHandler(details) => {
            if details.reads.is_empty() {
                return bad("a query handler must read at least one projection".into());
            }
            if let Some(name) = details.reads.iter().find(|name| !is_name(name)) {
                return bad(format!("{} is not a projection name", quote(name)));
            }
            description.reads = Some(details.reads);
            PluginKind::QueryHandler
        }
    };
    if declared != kind {
        return bad(format!(
            "it describes itself as a {declared} but implements the {kind} world"
        ));
    }
    Ok(description)
}

/// Quotes text a plugin sent, cut short: a plugin must not fill logs or listings.
pub(super) fn quote(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
    }
}

/// Plugin, aggregate type and projection names: 1-64 lowercase letters, digits or
/// dashes, so they are safe in routes, file names and metric labels.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_handler(name: &str, handles: &[&str]) -> wit::PluginInfo {
        wit::PluginInfo {
            name: name.into(),
            version: "1.0.0".into(),
            handles: handles.iter().map(|h| h.to_string()).collect(),
            details: wit::PluginDetails::CommandHandler(wit::CommandHandlerDetails {
                aggregate_type: "account".into(),
            }),
        }
    }

    fn query_handler(reads: &[&str]) -> wit::PluginInfo {
        wit::PluginInfo {
            name: "bank-queries".into(),
            version: "1.0.0".into(),
            handles: vec!["balance".into()],
            details: wit::PluginDetails::QueryHandler(wit::QueryHandlerDetails {
                reads: reads.iter().map(|r| r.to_string()).collect(),
            }),
        }
    }

    fn refusal(result: Result<Description, LoadError>) -> String {
        match result {
            Err(LoadError::BadDescription(reason)) => reason,
            other => panic!("expected BadDescription, got {other:?}"),
        }
    }

    #[test]
    fn a_good_command_handler_is_described_as_it_said() {
        let description = check(
            command_handler("bank", &["open", "deposit"]),
            PluginKind::CommandHandler,
            Contract::V0_2,
        )
        .unwrap();
        assert_eq!(description.name, "bank");
        assert_eq!(description.kind, PluginKind::CommandHandler);
        assert_eq!(description.contract, Contract::V0_2);
        assert_eq!(description.handles, ["open", "deposit"]);
        assert_eq!(description.aggregate_type.as_deref(), Some("account"));
        assert_eq!(description.mode, None);
        assert_eq!(description.reads, None);
    }

    #[test]
    fn a_projection_keeps_its_schema_version_and_mode() {
        let info = wit::PluginInfo {
            name: "totals".into(),
            version: "1.0.0".into(),
            handles: vec!["deposited".into()],
            details: wit::PluginDetails::Projection(wit::ProjectionDetails {
                schema_version: 3,
                mode: wit::ProjectionMode::Inline,
            }),
        };
        let description = check(info, PluginKind::Projection, Contract::V0_1).unwrap();
        assert_eq!(description.schema_version, Some(3));
        assert_eq!(description.mode, Some(ProjectionMode::Inline));
    }

    #[test]
    fn names_must_be_plain() {
        for name in ["", "Bank", "bank account", "bank/x", &"a".repeat(65)] {
            let reason = refusal(check(
                command_handler(name, &["open"]),
                PluginKind::CommandHandler,
                Contract::V0_2,
            ));
            assert!(reason.starts_with("name "), "{reason}");
        }
    }

    #[test]
    fn what_is_handled_must_be_listed_once_and_be_a_name() {
        let nothing = refusal(check(
            command_handler("bank", &[]),
            PluginKind::CommandHandler,
            Contract::V0_2,
        ));
        assert_eq!(nothing, "it handles nothing");
        let twice = refusal(check(
            command_handler("bank", &["open", "open"]),
            PluginKind::CommandHandler,
            Contract::V0_2,
        ));
        assert_eq!(twice, "\"open\" is listed twice");
        let slash = refusal(check(
            command_handler("bank", &["a/b"]),
            PluginKind::CommandHandler,
            Contract::V0_2,
        ));
        assert_eq!(slash, "\"a/b\" is not a valid name to handle");
    }

    #[test]
    fn the_kind_described_must_be_the_world_implemented() {
        let reason = refusal(check(
            command_handler("bank", &["open"]),
            PluginKind::Projection,
            Contract::V0_2,
        ));
        assert_eq!(
            reason,
            "it describes itself as a command-handler but implements the projection world"
        );
    }

    #[test]
    fn a_query_handler_reads_named_projections() {
        let none = refusal(check(
            query_handler(&[]),
            PluginKind::QueryHandler,
            Contract::V0_2,
        ));
        assert_eq!(none, "a query handler must read at least one projection");
        let bad = refusal(check(
            query_handler(&["Totals"]),
            PluginKind::QueryHandler,
            Contract::V0_2,
        ));
        assert_eq!(bad, "\"Totals\" is not a projection name");
        let good = check(
            query_handler(&["totals"]),
            PluginKind::QueryHandler,
            Contract::V0_2,
        )
        .unwrap();
        assert_eq!(good.reads, Some(vec!["totals".to_string()]));
    }

    #[test]
    fn quoted_text_is_cut_at_64_characters() {
        assert_eq!(quote("open"), "\"open\"");
        let long = "é".repeat(100);
        let quoted = quote(&long);
        assert!(quoted.ends_with("... (200 bytes)"), "{quoted}");
        assert_eq!(quoted.matches('é').count(), 64);
    }
}
