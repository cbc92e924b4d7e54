//! Logging through the host. Lines land in the host's `tracing` output, tagged with
//! the plugin's name. Writing to stdout or stderr works too (also tagged), but these
//! functions carry a level.

use crate::__bindings::command::tessera::plugin0_2_0::log::{Level, log};

pub fn trace(message: &str) {
    log(Level::Trace, message);
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}
