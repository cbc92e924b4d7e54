//! Paths of the plugins built from `plugins/` for this test run (see `build.rs`).

/// One constant per plugin crate, named after it: `BANK_ACCOUNT`, `TEST_TRAP`...
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}
