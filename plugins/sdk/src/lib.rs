//! The Tessera guest SDK: write plugins as typed Rust, not WIT plumbing.
//!
//! A command handler is a type implementing [`Aggregate`]: a state that folds events
//! with [`Aggregate::apply`] and decides on commands with [`Aggregate::handle`]. Commands
//! and events are ordinary serde enums. The [`command_handler!`] macro exports it as a
//! component of the `tessera:plugin/command-handler` world.
//!
//! The SDK implements version 0.2.0 of the contract (`tessera:plugin@0.2.0`, in
//! `wit/tessera.wit`): the host hands an aggregate every event it must fold in one call
//! (the SDK folds them with [`Aggregate::apply`], deserializing the state once), and a
//! projection a batch of events in one call (the SDK applies them in order with
//! [`Projection::apply`] and reports the first that fails).
//!
//! ```ignore
//! #[derive(Default, Serialize, Deserialize)]
//! struct Counter { value: u64 }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! enum Command { Increment { by: u64 } }
//!
//! #[derive(Serialize, Deserialize)]
//! enum Event { Incremented { by: u64 } }
//!
//! impl Aggregate for Counter {
//!     const AGGREGATE_TYPE: &'static str = "counter";
//!     type Command = Command;
//!     type Event = Event;
//!     fn apply(&mut self, event: Event) { match event { Event::Incremented { by } => self.value += by } }
//!     fn handle(&self, command: Command, _: &Metadata) -> Result<Vec<Event>, Refusal> {
//!         match command { Command::Increment { by } => Ok(vec![Event::Incremented { by }]) }
//!     }
//! }
//! tessera_sdk::command_handler!(Counter);
//! ```
//!
//! How commands and events map to JSON: a command named `open-account` with payload
//! `{"owner": "ada"}` is deserialized as the variant `OpenAccount { owner }` of an
//! externally tagged enum whose variants are renamed to kebab-case; an event variant
//! `Deposited { amount }` is stored with type `Deposited` and data `{"amount": ...}`.
//! A payload that does not deserialize is refused as invalid, with the offending field.

mod aggregate;
mod projection;
mod query;
mod refusal;
mod tagged;
mod variants;

pub mod log;
pub mod sql;
/// Given/when/then for aggregates, run natively by a plugin's own `cargo test`.
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use aggregate::{Aggregate, Metadata};
pub use projection::{Db, Envelope, Mode, Projection};
pub use query::{Page, PageRequest, Params, QueryHandler, read};
pub use refusal::{FieldError, Refusal};
pub use serde_json::{Value as Json, json};

/// What the export macros call; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::aggregate::{describe, fold, handle};
    pub mod projection {
        pub use crate::projection::{apply_batch, describe, setup};
    }
    pub mod query {
        pub use crate::query::{describe, handle};
    }
}

/// Bindings generated from `wit/` (`tessera:plugin@0.2.0`), one module per world. The
/// shared interfaces are generated once, in `command`, and reused by the other worlds.
/// (`wit/deps` holds the older 0.1.0 too, so the generated modules are named with
/// their version: `tessera::plugin0_2_0`.)
#[doc(hidden)]
pub mod __bindings {
    pub mod command {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "tessera:plugin/command-handler@0.2.0",
            pub_export_macro: true,
            export_macro_name: "export_command_handler",
            default_bindings_module: "tessera_sdk::__bindings::command",
        });
    }

    pub mod projection {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "tessera:plugin/projection@0.2.0",
            pub_export_macro: true,
            export_macro_name: "export_projection",
            default_bindings_module: "tessera_sdk::__bindings::projection",
            with: {
                "tessera:plugin/types@0.2.0": crate::__bindings::command::tessera::plugin0_2_0::types,
                "tessera:plugin/log@0.2.0": crate::__bindings::command::tessera::plugin0_2_0::log,
            },
        });
    }

    pub mod query {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "tessera:plugin/query-handler@0.2.0",
            pub_export_macro: true,
            export_macro_name: "export_query_handler",
            default_bindings_module: "tessera_sdk::__bindings::query",
            with: {
                "tessera:plugin/types@0.2.0": crate::__bindings::command::tessera::plugin0_2_0::types,
                "tessera:plugin/log@0.2.0": crate::__bindings::command::tessera::plugin0_2_0::log,
                "tessera:plugin/sql-types@0.2.0": crate::__bindings::projection::tessera::plugin0_2_0::sql_types,
            },
        });
    }
}

/// Exports a type implementing [`Aggregate`] as this component's command handler.
///
/// The plugin's name and version are the crate's package name and version, unless
/// given: `command_handler!(Account, name = "bank-account", version = "2.0.0")`.
#[macro_export]
macro_rules! command_handler {
    ($aggregate:ty) => {
        $crate::command_handler!(
            $aggregate,
            name = env!("CARGO_PKG_NAME"),
            version = env!("CARGO_PKG_VERSION")
        );
    };
    ($aggregate:ty, name = $name:expr) => {
        $crate::command_handler!(
            $aggregate,
            name = $name,
            version = env!("CARGO_PKG_VERSION")
        );
    };
    ($aggregate:ty, name = $name:expr, version = $version:expr) => {
        // Natively (a plugin's own tests) nothing is exported, so the type is unused.
        #[allow(dead_code)]
        struct __TesseraCommandHandler;

        impl $crate::__bindings::command::exports::tessera::plugin0_2_0::aggregate::Guest
            for __TesseraCommandHandler
        {
            fn describe() -> $crate::__bindings::command::tessera::plugin0_2_0::types::PluginInfo {
                $crate::__private::describe::<$aggregate>($name, $version)
            }

            fn fold(
                state: Option<String>,
                events: Vec<$crate::__bindings::command::tessera::plugin0_2_0::types::Event>,
            ) -> String {
                $crate::__private::fold::<$aggregate>(state, events)
            }

            fn handle(
                state: Option<String>,
                command: $crate::__bindings::command::exports::tessera::plugin0_2_0::aggregate::Command,
            ) -> Result<
                Vec<$crate::__bindings::command::exports::tessera::plugin0_2_0::aggregate::NewEvent>,
                $crate::__bindings::command::tessera::plugin0_2_0::types::Refusal,
            > {
                $crate::__private::handle::<$aggregate>(state, command)
            }
        }

        // Only a component exports: natively the export symbols would clash between
        // two plugin crates linked into one binary (a benchmark, a test).
        #[cfg(target_arch = "wasm32")]
        $crate::__bindings::command::export_command_handler!(__TesseraCommandHandler);
    };
}

/// Exports a type implementing [`Projection`] as this component's projection. The
/// name and version default to the crate's, as for [`command_handler!`].
#[macro_export]
macro_rules! projection {
    ($projection:ty) => {
        $crate::projection!(
            $projection,
            name = env!("CARGO_PKG_NAME"),
            version = env!("CARGO_PKG_VERSION")
        );
    };
    ($projection:ty, name = $name:expr) => {
        $crate::projection!(
            $projection,
            name = $name,
            version = env!("CARGO_PKG_VERSION")
        );
    };
    ($projection:ty, name = $name:expr, version = $version:expr) => {
        // Natively (a plugin's own tests) nothing is exported, so the type is unused.
        #[allow(dead_code)]
        struct __TesseraProjection;

        impl $crate::__bindings::projection::exports::tessera::plugin0_2_0::projector::Guest
            for __TesseraProjection
        {
            fn describe() -> $crate::__bindings::command::tessera::plugin0_2_0::types::PluginInfo {
                $crate::__private::projection::describe::<$projection>($name, $version)
            }

            fn setup() -> Result<(), String> {
                $crate::__private::projection::setup::<$projection>()
            }

            fn apply_batch(
                events: Vec<$crate::__bindings::command::tessera::plugin0_2_0::types::Event>,
            ) -> Result<
                (),
                $crate::__bindings::projection::exports::tessera::plugin0_2_0::projector::BatchFailure,
            > {
                $crate::__private::projection::apply_batch::<$projection>(events)
            }
        }

        // Only a component exports: natively the export symbols would clash between
        // two plugin crates linked into one binary (a benchmark, a test).
        #[cfg(target_arch = "wasm32")]
        $crate::__bindings::projection::export_projection!(__TesseraProjection);
    };
}

/// Exports a type implementing [`QueryHandler`] as this component's query handler.
/// The name and version default to the crate's, as for [`command_handler!`].
#[macro_export]
macro_rules! query_handler {
    ($handler:ty) => {
        $crate::query_handler!(
            $handler,
            name = env!("CARGO_PKG_NAME"),
            version = env!("CARGO_PKG_VERSION")
        );
    };
    ($handler:ty, name = $name:expr) => {
        $crate::query_handler!($handler, name = $name, version = env!("CARGO_PKG_VERSION"));
    };
    ($handler:ty, name = $name:expr, version = $version:expr) => {
        // Natively (a plugin's own tests) nothing is exported, so the type is unused.
        #[allow(dead_code)]
        struct __TesseraQueryHandler;

        impl $crate::__bindings::query::exports::tessera::plugin0_2_0::querier::Guest
            for __TesseraQueryHandler
        {
            fn describe() -> $crate::__bindings::command::tessera::plugin0_2_0::types::PluginInfo {
                $crate::__private::query::describe::<$handler>($name, $version)
            }

            fn handle(
                name: String,
                params: String,
            ) -> Result<String, $crate::__bindings::command::tessera::plugin0_2_0::types::Refusal>
            {
                $crate::__private::query::handle::<$handler>(name, params)
            }
        }

        // Only a component exports: natively the export symbols would clash between
        // two plugin crates linked into one binary (a benchmark, a test).
        #[cfg(target_arch = "wasm32")]
        $crate::__bindings::query::export_query_handler!(__TesseraQueryHandler);
    };
}
