//! Test plugin: version 1 of the command handler named `swap` (see `swap.rs`). Tests
//! swap it with `test-swap-v2` under load and check that each response is wholly one
//! version's.

mod swap;

/// Stamped on every event this code decides.
const CODE: &str = "v1";

tessera_sdk::command_handler!(swap::Swap, name = "swap", version = "1.0.0");
