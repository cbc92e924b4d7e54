//! Test plugin: the fixed build of the projection named `poison`; the same source as
//! `test-poison-projection` (`poison-projection/src/poison.rs`), but it records the
//! owner `"poison"` like any other.

#[path = "../../poison-projection/src/poison.rs"]
mod poison;

/// Whether this build applies the poison event.
const FIXED: bool = true;

tessera_sdk::projection!(poison::Poison, name = "poison", version = "1.0.1");
