//! The `tessera` command: parses arguments and runs the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tessera::event_store::Durability;

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "A CQRS host for WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Serve the plugins in a folder over HTTP.
    Serve {
        /// Where the host keeps its databases (created if missing).
        #[arg(long, default_value = "data", env = "TESSERA_DATA")]
        data: PathBuf,
        /// The folder of `.wasm` plugins to serve.
        #[arg(long, default_value = "plugins", env = "TESSERA_PLUGINS")]
        plugins: PathBuf,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "TESSERA_LISTEN")]
        listen: SocketAddr,
        /// `full`: an acknowledged command survives power loss (fsync per commit).
        /// `normal`: faster; a power loss (not a crash) may lose the last commits.
        #[arg(long, default_value = "full", value_parser = parse_durability)]
        durability: Durability,
    },
}

fn parse_durability(value: &str) -> Result<Durability, String> {
    match value {
        "full" => Ok(Durability::Full),
        "normal" => Ok(Durability::Normal),
        other => Err(format!("expected `full` or `normal`, not {other:?}")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Commands::Serve {
            data,
            plugins,
            listen,
            durability,
        } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let mut config = tessera::Config::new(data, plugins);
            config.durability = durability;
            tessera::serve(listener, config, shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
}
