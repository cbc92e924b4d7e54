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
//! the interfaces that only declare types (`types`, `sql-types`) are identical, so 0.2.0
//! reuses 0.1.0's Rust types for them: a `PluginInfo`, an `Event` or a `Refusal` is one
//! type whichever contract produced it (the component model checks the shapes when a
//! component is linked, so a divergence would fail every 0.2.0 plugin's load, not go
//! unnoticed). The interfaces with functions (`log`, `projection-store`, `read-store`)
//! are instances of their own version, implemented in `host.rs` for both.

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
            with: {
                "tessera:plugin/types@0.2.0": crate::plugin::bindings::types,
            },
        });
    }

    pub mod projection {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "tessera:plugin/projection@0.2.0",
            imports: { default: trappable },
            with: {
                "tessera:plugin/types@0.2.0": crate::plugin::bindings::types,
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
                "tessera:plugin/types@0.2.0": crate::plugin::bindings::types,
                "tessera:plugin/log@0.2.0": super::command::tessera::plugin0_2_0::log,
                "tessera:plugin/sql-types@0.2.0": crate::plugin::bindings::sql_types,
            },
        });
    }
}

/// The types both contracts share.
pub use v0_1::command::tessera::plugin0_1_0::types;
pub use v0_1::projection::tessera::plugin0_1_0::sql_types;
