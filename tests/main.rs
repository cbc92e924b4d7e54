//! The end-to-end tests, one module per file beside this one, in a single test binary:
//! each binary links the whole host (wasmtime with it), so one binary instead of one
//! per file saves that link on every build. cargo-nextest still runs every test in a
//! process of its own; `cargo test --test e2e <module>::` runs one file's tests.

mod common;

mod auth;
mod backup;
mod bad_input;
mod bank_handler;
mod commands_http;
mod contracts;
mod crash_kill;
mod dashboard_browser;
mod deploy_http;
mod dev_loop;
mod differential;
mod differential_py;
mod event_stream;
mod hostile_plugins;
mod instance_reuse;
mod metrics;
mod observability;
mod openapi;
mod operations;
mod postgres_store;
mod projection_crash;
mod projection_lifecycle;
mod projection_swap;
mod read_side_http;
mod sandbox_read_store;
mod scaffold;
mod soak;
mod sql_sandbox;
mod swap_ts;
