//! Which Tessera world a component implements, and linking it against that world.
//!
//! A plugin's kind and contract are read from what the component exports, never from
//! what it says about itself: [`world_of`] finds the one `tessera:plugin` interface
//! it exports, and [`pre_instantiate`] links it against that world's imports only, so
//! a component of the wrong world, or one importing what the host never offers, fails
//! at load with a message that says why, not on its first call.

use std::collections::HashSet;

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use super::error::LoadError;
use super::host::HostState;

/// The version of the WIT contract (`tessera:plugin@…`) a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Contract {
    /// `tessera:plugin@0.1.0`: one call per event folded or projected.
    #[serde(rename = "0.1.0")]
    V0_1,
    /// `tessera:plugin@0.2.0`: a list of events folded, or a batch projected, per call.
    #[serde(rename = "0.2.0")]
    V0_2,
}

impl Contract {
    /// Every contract the host serves, newest first.
    pub const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    /// The package version, e.g. `0.2.0`.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.version())
    }
}

/// The three kinds of plugin, one per WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    CommandHandler,
    Projection,
    QueryHandler,
}

impl PluginKind {
    /// The interface a component of this kind and contract exports.
    fn export(self, contract: Contract) -> String {
        let interface = match self {
            PluginKind::CommandHandler => "aggregate",
            PluginKind::Projection => "projector",
            PluginKind::QueryHandler => "querier",
        };
        format!("tessera:plugin/{interface}@{}", contract.version())
    }

    const ALL: [PluginKind; 3] = [
        PluginKind::CommandHandler,
        PluginKind::Projection,
        PluginKind::QueryHandler,
    ];
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::CommandHandler => "command-handler",
            PluginKind::Projection => "projection",
            PluginKind::QueryHandler => "query-handler",
        })
    }
}

/// The world a component implements, told by the Tessera interface it exports: its
/// kind, and the version of the contract.
pub(super) fn world_of(
    engine: &Engine,
    component: &Component,
) -> Result<(PluginKind, Contract), LoadError> {
    let exports: HashSet<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    find_world(&exports)
}

/// The one world whose interface is among `exports`.
fn find_world(exports: &HashSet<String>) -> Result<(PluginKind, Contract), LoadError> {
    let worlds = || {
        Contract::ALL
            .into_iter()
            .flat_map(|contract| PluginKind::ALL.map(|kind| (kind, contract)))
    };
    let mut found = worlds().filter(|(kind, contract)| exports.contains(&kind.export(*contract)));
    match (found.next(), found.next()) {
        (Some(world), None) => Ok(world),
        (Some((kind, contract)), Some((other, other_contract))) => Err(LoadError::WrongWorld {
            kind,
            reason: if kind == other {
                format!(
                    "it exports the {kind} interface of both contracts {contract} and \
                     {other_contract}; a plugin implements one"
                )
            } else {
                format!("it also exports the {other} interface; a plugin has one kind")
            },
        }),
        (None, _) => Err(LoadError::UnknownWorld {
            expected: worlds()
                .map(|(kind, contract)| kind.export(contract))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Pre-instantiates `component` with the linker of its world. A failure means the
/// component imports something that world does not offer: it is of another world.
pub(super) fn pre_instantiate(
    linker: &Linker<HostState>,
    component: &Component,
    kind: PluginKind,
) -> Result<InstancePre<HostState>, LoadError> {
    linker.instantiate_pre(component).map_err(|e| {
        // wasmtime's message names what is missing in linker terms ("resource
        // implementation is missing"); an import from outside what plugins get is said
        // plainly, with how to build without it.
        match unoffered_import(component) {
            Some(import) => LoadError::UnofferedImport {
                kind,
                hint: build_hint(&import),
                import,
            },
            None => wrong_world(kind, e),
        }
    })
}

/// The interface namespaces a plugin may import: the contract's own, and the WASI
/// interfaces the host links (see `Runtime::new`); anything else is never offered.
const OFFERED_IMPORTS: &[&str] = &[
    "tessera:plugin/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// The first import of `component` outside [`OFFERED_IMPORTS`], by name.
fn unoffered_import(component: &Component) -> Option<String> {
    let engine = component.engine();
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .find(|name| !is_offered(name))
}

/// Whether the host may offer import `name` (whether it does depends on the world).
fn is_offered(name: &str) -> bool {
    OFFERED_IMPORTS
        .iter()
        .any(|offered| name.starts_with(offered))
}

/// How to build a component without `import`.
fn build_hint(import: &str) -> &'static str {
    if import.starts_with("wasi:http/") {
        "componentize-js adds wasi:http for fetch() unless told not to: build with \
         `jco componentize -d http -d fetch-event` (or `disableFeatures: [\"http\", \
         \"fetch-event\"]`), as the TypeScript SDK's `npm run build` does \
         (docs/plugins/typescript.md)."
    } else {
        "Build the component against its world in wit/tessera.wit, without that import."
    }
}

/// A component that does not fit the world of `kind`, with wasmtime's reason.
pub(super) fn wrong_world(kind: PluginKind, error: wasmtime::Error) -> LoadError {
    LoadError::WrongWorld {
        kind,
        reason: format!("{error:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports(names: &[&str]) -> HashSet<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn each_kind_and_contract_exports_its_own_interface() {
        assert_eq!(
            PluginKind::CommandHandler.export(Contract::V0_1),
            "tessera:plugin/aggregate@0.1.0"
        );
        assert_eq!(
            PluginKind::Projection.export(Contract::V0_2),
            "tessera:plugin/projector@0.2.0"
        );
        assert_eq!(
            PluginKind::QueryHandler.export(Contract::V0_2),
            "tessera:plugin/querier@0.2.0"
        );
    }

    #[test]
    fn the_world_is_found_from_the_one_interface_exported() {
        let world = find_world(&exports(&[
            "tessera:plugin/projector@0.1.0",
            "wasi:cli/run@0.2.0",
        ]));
        assert!(matches!(
            world,
            Ok((PluginKind::Projection, Contract::V0_1))
        ));
    }

    #[test]
    fn a_component_exporting_no_tessera_interface_is_refused_naming_them_all() {
        let Err(LoadError::UnknownWorld { expected }) = find_world(&exports(&["wasi:cli/run"]))
        else {
            panic!("expected UnknownWorld");
        };
        assert_eq!(expected.split(", ").count(), 6);
        assert!(expected.contains("tessera:plugin/querier@0.1.0"));
    }

    #[test]
    fn a_component_of_two_kinds_or_two_contracts_is_refused() {
        let two_kinds = find_world(&exports(&[
            "tessera:plugin/aggregate@0.2.0",
            "tessera:plugin/querier@0.2.0",
        ]));
        let Err(LoadError::WrongWorld { reason, .. }) = two_kinds else {
            panic!("expected WrongWorld");
        };
        assert!(reason.contains("a plugin has one kind"), "{reason}");

        let two_contracts = find_world(&exports(&[
            "tessera:plugin/aggregate@0.1.0",
            "tessera:plugin/aggregate@0.2.0",
        ]));
        let Err(LoadError::WrongWorld { reason, .. }) = two_contracts else {
            panic!("expected WrongWorld");
        };
        assert!(reason.contains("a plugin implements one"), "{reason}");
    }

    #[test]
    fn only_the_contract_and_harmless_wasi_are_offered() {
        assert!(is_offered("tessera:plugin/log@0.2.0"));
        assert!(is_offered("wasi:io/streams@0.2.3"));
        assert!(!is_offered("wasi:http/outgoing-handler@0.2.3"));
        assert!(!is_offered("acme:evil/anything"));
    }

    #[test]
    fn an_http_import_gets_the_componentize_js_hint() {
        assert!(build_hint("wasi:http/types@0.2.3").contains("jco componentize"));
        assert!(build_hint("acme:evil/anything").contains("wit/tessera.wit"));
    }

    #[test]
    fn contracts_are_shown_and_serialized_as_their_version() {
        assert_eq!(Contract::V0_2.to_string(), "0.2.0");
        assert_eq!(serde_json::to_string(&Contract::V0_1).unwrap(), "\"0.1.0\"");
        assert_eq!(Contract::ALL[0], Contract::V0_2);
    }
}
