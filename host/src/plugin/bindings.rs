//! The host's only `bindgen!` site: Rust bindings for the worlds of `wit/`, two
//! versions of the contract with three worlds each.
//!
//! `wit/tessera.wit` is `tessera:plugin@0.2.0`; `wit/deps/tessera-plugin-0.1.0` is
//! the frozen 0.1.0, which the host still serves. Both are in every `bindgen!`'s
//! resolve, so the generated modules carry their version (`plugin0_1_0`,
//! `plugin0_2_0`).
//!
//! Within one version the shared interfaces (`types`, `log`, `sql-types`) are generated
//! once, with the command-handler world, and reused by the other two. Across versions,
//! `sql-types` is identical, so 0.2.0 reuses 0.1.0's Rust types for it (the component
//! model checks the shapes when a component is linked, so a divergence would fail
//! every 0.2.0 plugin's load, not go unnoticed). `types` is not: 0.2.0's `metadata`
//! has a last field, `claims`. So each version has its own `types`; the host works
//! with 0.2.0's ([`types`]) and converts at the 0.1.0 boundary with the `From`
//! impls below: a 0.1.0 plugin's description and refusals are lifted (field for
//! field, nothing lost), and the events and metadata it is handed lose `claims`, which
//! 0.1.0 cannot carry. The interfaces with functions (`log`, `projection-store`,
//! `read-store`) are instances of their own version, implemented in `host.rs` for both.

/// `tessera:plugin@0.1.0`.
pub mod v0_1 {
    pub mod command {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "tessera:plugin/command-handler@0.1.0",
            imports: { default: trappable },
        });
    }

    pub mod projection {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "tessera:plugin/projection@0.1.0",
            imports: { default: trappable },
            with: {
                "tessera:plugin/types@0.1.0": super::command::tessera::plugin0_1_0::types,
                "tessera:plugin/log@0.1.0": super::command::tessera::plugin0_1_0::log,
            },
        });
    }

    pub mod query {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "tessera:plugin/query-handler@0.1.0",
            imports: { default: trappable },
            with: {
                "tessera:plugin/types@0.1.0": super::command::tessera::plugin0_1_0::types,
                "tessera:plugin/log@0.1.0": super::command::tessera::plugin0_1_0::log,
                "tessera:plugin/sql-types@0.1.0": super::projection::tessera::plugin0_1_0::sql_types,
            },
        });
    }
}

/// `tessera:plugin@0.2.0`.
pub mod v0_2 {
    pub mod command {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "tessera:plugin/command-handler@0.2.0",
            imports: { default: trappable },
        });
    }

    pub mod projection {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "tessera:plugin/projection@0.2.0",
            imports: { default: trappable },
            with: {
                "tessera:plugin/types@0.2.0": super::command::tessera::plugin0_2_0::types,
                "tessera:plugin/log@0.2.0": super::command::tessera::plugin0_2_0::log,
                "tessera:plugin/sql-types@0.2.0": crate::plugin::bindings::sql_types,
            },
        });
    }

    pub mod query {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "tessera:plugin/query-handler@0.2.0",
            imports: { default: trappable },
            with: {
                "tessera:plugin/types@0.2.0": super::command::tessera::plugin0_2_0::types,
                "tessera:plugin/log@0.2.0": super::command::tessera::plugin0_2_0::log,
                "tessera:plugin/sql-types@0.2.0": crate::plugin::bindings::sql_types,
            },
        });
    }
}

/// 0.1.0's types, converted to and from [`types`] at the 0.1.0 boundary.
pub use v0_1::command::tessera::plugin0_1_0::types as types_v0_1;
/// The SQL types both contracts share.
pub use v0_1::projection::tessera::plugin0_1_0::sql_types;
/// The host's types: the current contract's (0.2.0).
pub use v0_2::command::tessera::plugin0_2_0::types;

impl From<types_v0_1::PluginInfo> for types::PluginInfo {
    fn from(info: types_v0_1::PluginInfo) -> Self {
        use types_v0_1::PluginDetails as Old;
        types::PluginInfo {
            name: info.name,
            version: info.version,
            handles: info.handles,
            details: match info.details {
                Old::CommandHandler(d) => {
                    types::PluginDetails::CommandHandler(types::CommandHandlerDetails {
                        aggregate_type: d.aggregate_type,
                    })
                }
                Old::Projection(d) => types::PluginDetails::Projection(types::ProjectionDetails {
                    schema_version: d.schema_version,
                    mode: match d.mode {
                        types_v0_1::ProjectionMode::Async => types::ProjectionMode::Async,
                        types_v0_1::ProjectionMode::Inline => types::ProjectionMode::Inline,
                    },
                }),
                Old::QueryHandler(d) => {
                    types::PluginDetails::QueryHandler(types::QueryHandlerDetails {
                        reads: d.reads,
                    })
                }
            },
        }
    }
}

impl From<types_v0_1::Refusal> for types::Refusal {
    fn from(refusal: types_v0_1::Refusal) -> Self {
        use types_v0_1::Refusal as Old;
        match refusal {
            Old::Invalid(fields) => types::Refusal::Invalid(
                fields
                    .into_iter()
                    .map(|f| types::FieldError {
                        field: f.field,
                        message: f.message,
                    })
                    .collect(),
            ),
            Old::Rejected(r) => types::Refusal::Rejected(types::Rejection {
                code: r.code,
                message: r.message,
            }),
            Old::NotFound(message) => types::Refusal::NotFound(message),
        }
    }
}

/// 0.1.0 has no `claims`: a 0.1.0 handler sees the principal only.
impl From<types::Metadata> for types_v0_1::Metadata {
    fn from(m: types::Metadata) -> Self {
        types_v0_1::Metadata {
            command_id: m.command_id,
            correlation_id: m.correlation_id,
            causation_id: m.causation_id,
            principal: m.principal,
            timestamp: m.timestamp,
        }
    }
}

impl From<types::Event> for types_v0_1::Event {
    fn from(e: types::Event) -> Self {
        types_v0_1::Event {
            position: e.position,
            stream: e.stream,
            version: e.version,
            event_type: e.event_type,
            data: e.data,
            metadata: e.metadata.into(),
            timestamp: e.timestamp,
        }
    }
}
