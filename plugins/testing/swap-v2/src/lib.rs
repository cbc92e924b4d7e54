//! Test plugin: version 2 of the command handler named `swap`; the same source as
//! `test-swap-v1` (`swap-v1/src/swap.rs`) with another [`CODE`].

#[path = "../../swap-v1/src/swap.rs"]
mod swap;

/// Stamped on every event this code decides.
const CODE: &str = "v2";

tessera_sdk::command_handler!(swap::Swap, name = "swap", version = "2.0.0");
