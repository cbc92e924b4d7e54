//! The host's only `bindgen!` site: Rust bindings for the three worlds of `wit/`.
//!
//! The shared interfaces (`types`, `log`, `sql-types`) are generated once, with the
//! command-handler world, and reused by the other two, so a `PluginInfo` is one type
//! whichever world produced it.

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
            "tessera:plugin/types": super::command::tessera::plugin::types,
            "tessera:plugin/log": super::command::tessera::plugin::log,
        },
    });
}

pub mod query {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tessera:plugin/query-handler@0.1.0",
        imports: { default: trappable },
        with: {
            "tessera:plugin/types": super::command::tessera::plugin::types,
            "tessera:plugin/log": super::command::tessera::plugin::log,
            "tessera:plugin/sql-types": super::projection::tessera::plugin::sql_types,
        },
    });
}

pub use command::tessera::plugin::types;
