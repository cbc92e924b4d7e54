//! Test plugin: the projection named `poison` (see `poison.rs`), which fails on the
//! account opened for the owner `"poison"`. `test-poison-projection-fixed` is its fix.

mod poison;

/// Whether this build applies the poison event.
const FIXED: bool = false;

tessera_sdk::projection!(poison::Poison, name = "poison", version = "1.0.0");
