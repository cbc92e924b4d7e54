//! Logging through the host. Lines land in the host's `tracing` output, tagged with
//! the plugin's name. Writing to stdout or stderr works too (also tagged), but these
//! functions carry a level.
//!
//! Natively (a plugin's own `cargo test`, with no host) the lines go to stderr, so
//! that code which logs can be tested without a host.

use crate::__bindings::command::tessera::plugin0_2_0::log::Level;

pub fn trace(message: &str) {
    emit(Level::Trace, message);
}

pub fn debug(message: &str) {
    emit(Level::Debug, message);
}

pub fn info(message: &str) {
    emit(Level::Info, message);
}

pub fn warn(message: &str) {
    emit(Level::Warn, message);
}

pub fn error(message: &str) {
    emit(Level::Error, message);
}

#[cfg(target_arch = "wasm32")]
fn emit(level: Level, message: &str) {
    crate::__bindings::command::tessera::plugin0_2_0::log::log(level, message);
}

/// The generated bindings' `log` import cannot be called natively (it panics), so a
/// native build writes to stderr, where the test harness captures it per test.
#[cfg(not(target_arch = "wasm32"))]
fn emit(level: Level, message: &str) {
    eprintln!("[{level:?}] {message}");
}
