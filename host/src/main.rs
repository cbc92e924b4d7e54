//! The `tessera` command: parses arguments and calls the library.
#![allow(clippy::print_stdout)] // a command-line tool prints its answers

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use std::time::Duration;

use tessera::event_store::Durability;
use tessera::plugin::{Limits, PluginLimits};

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
    Serve(ServeArgs),
    /// Serve, and rebuild a plugin whenever its source changes (development).
    Dev {
        #[command(flatten)]
        serve: ServeArgs,
        /// The plugins workspace to watch and build.
        #[arg(long, default_value = "plugins")]
        sources: PathBuf,
        /// The cargo target directory for plugin builds.
        #[arg(long, default_value = "target/wasm-plugins")]
        target_dir: PathBuf,
        /// The plugin crates to build and serve.
        #[arg(long = "crate", default_values = ["bank-account", "account-balance", "bank-totals", "bank-queries"])]
        crates: Vec<String>,
    },
    /// Deploy a plugin to a running host.
    Deploy {
        /// The `.wasm` component to deploy.
        file: PathBuf,
        /// The plugin's name; by default the file's stem, with `_` read as `-`.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List a running host's plugins.
    Plugins {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show a running host's projection versions, with catch-up progress.
    Projections {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Refresh every second until interrupted.
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Where the host keeps its databases (created if missing).
    #[arg(long, default_value = "data", env = "TESSERA_DATA")]
    data: PathBuf,
    /// The folder of `.wasm` plugins to serve (watched for changes).
    #[arg(long, default_value = "plugins", env = "TESSERA_PLUGINS")]
    plugins: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "TESSERA_LISTEN")]
    listen: SocketAddr,
    /// `full`: an acknowledged command survives power loss (an fsync per group
    /// commit). `normal`: no fsync per commit; a power loss (not a process crash) may
    /// lose the last acknowledged commands.
    #[arg(long, default_value = "full", value_parser = parse_durability)]
    durability: Durability,
    /// The bearer token for the admin endpoints (deploy, remove, rollback). Without
    /// one they answer only to clients on loopback.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Do not reload plugins when the folder changes.
    #[arg(long)]
    no_watch: bool,
    /// How long one command handler call may run, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    command_deadline_ms: u64,
    /// How long one query handler call may run, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    query_deadline_ms: u64,
    /// How long one projection `apply` may run, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    projection_deadline_ms: u64,
    /// The most memory one plugin instance may use, in MiB.
    #[arg(long, default_value_t = 64)]
    max_memory_mb: usize,
    /// The largest one projection version's database may grow, in MiB.
    #[arg(long, default_value_t = 1024)]
    max_disk_mb: u64,
    /// The most memory SQLite may hold in this process (guests' statements and the
    /// host's alike), in MiB; past it a statement fails.
    #[arg(long, default_value_t = 256)]
    sqlite_heap_mb: u64,
    /// How long a shutdown (SIGTERM, Ctrl-C) may take, in milliseconds, whatever
    /// plugins are doing.
    #[arg(long, default_value_t = 10_000)]
    shutdown_timeout_ms: u64,
    /// Limits for one plugin: `NAME:deadline_ms=2000,memory_mb=128,disk_mb=256`
    /// (repeatable).
    #[arg(long = "plugin-limit", value_parser = parse_plugin_limit)]
    plugin_limits: Vec<(String, PluginLimits)>,
    /// Allocate plugin instances on demand instead of from a pool.
    #[arg(long)]
    no_pooling: bool,
}

fn parse_plugin_limit(value: &str) -> Result<(String, PluginLimits), String> {
    let (name, settings) = value
        .split_once(':')
        .ok_or("expected NAME:deadline_ms=N,memory_mb=M,disk_mb=D")?;
    let mut limits = PluginLimits::default();
    for setting in settings.split(',') {
        let (key, number) = setting
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, not {setting:?}"))?;
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{key} must be a whole number"))?;
        match key {
            "deadline_ms" => limits.deadline = Some(Duration::from_millis(number)),
            "memory_mb" => limits.max_memory = Some((number as usize) << 20),
            "disk_mb" => limits.max_disk = Some(number << 20),
            other => {
                return Err(format!(
                    "unknown limit {other:?}; use deadline_ms, memory_mb or disk_mb"
                ));
            }
        }
    }
    Ok((name.to_string(), limits))
}

#[derive(Debug, Args)]
struct RemoteArgs {
    /// The host's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "TESSERA_URL")]
    url: String,
    /// The admin bearer token.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

fn parse_durability(value: &str) -> Result<Durability, String> {
    match value {
        "full" => Ok(Durability::Full),
        "normal" => Ok(Durability::Normal),
        other => Err(format!("expected `full` or `normal`, not {other:?}")),
    }
}

fn main() -> anyhow::Result<()> {
    // Plugin calls and SQLite reads run on the blocking pool; its threads are kept for
    // a minute rather than tokio's ten seconds, so a host under steady load does not
    // keep creating and ending threads.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_secs(60))
        .build()
        .context("cannot start the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Commands::Serve(args) => serve(args).await,
        Commands::Dev {
            serve: args,
            sources,
            target_dir,
            crates,
        } => {
            let dev = tessera::dev::DevLoop {
                sources,
                plugins_dir: args.plugins.clone(),
                target_dir,
                crates,
            };
            let builder = dev.clone();
            if !tokio::task::spawn_blocking(move || builder.build_all()).await? {
                tracing::warn!("the first build failed; serving what the plugins folder has");
            }
            let watching = tokio::spawn(dev.run());
            let served = serve(args).await;
            watching.abort();
            served
        }
        Commands::Deploy { file, name, remote } => deploy(file, name, remote).await,
        Commands::Plugins { remote } => list_plugins(remote).await,
        Commands::Projections { remote, watch } => loop {
            show_projections(&remote).await?;
            if !watch {
                break Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!();
        },
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut config = tessera::Config::new(args.data, args.plugins);
    config.durability = args.durability;
    config.admin_token = args.admin_token;
    config.watch_plugins = !args.no_watch;
    config.limits = Limits {
        command_deadline: Duration::from_millis(args.command_deadline_ms),
        query_deadline: Duration::from_millis(args.query_deadline_ms),
        projection_deadline: Duration::from_millis(args.projection_deadline_ms),
        max_memory: args.max_memory_mb << 20,
        max_disk: args.max_disk_mb << 20,
        sqlite_heap: args.sqlite_heap_mb << 20,
        pooling: !args.no_pooling,
        per_plugin: args.plugin_limits.into_iter().collect(),
        ..Limits::default()
    };
    config.shutdown_timeout = Duration::from_millis(args.shutdown_timeout_ms);
    match tessera::serve(listener, config, shutdown_signal()).await {
        // What still runs is abandoned: exit now rather than wait for it.
        Err(error @ tessera::ServeError::ShutdownTimedOut(_)) => {
            tracing::error!(%error, "exiting");
            std::process::exit(1);
        }
        result => Ok(result?),
    }
}

async fn deploy(file: PathBuf, name: Option<String>, remote: RemoteArgs) -> anyhow::Result<()> {
    let name = match name {
        Some(name) => name,
        None => file
            .file_stem()
            .map(|stem| stem.to_string_lossy().replace('_', "-"))
            .context("cannot tell the plugin's name from the file name; pass --name")?,
    };
    let bytes = tokio::fs::read(&file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    let mut request = reqwest::Client::new()
        .put(format!(
            "{}/plugins/{name}",
            remote.url.trim_end_matches('/')
        ))
        .header("content-type", "application/wasm")
        .body(bytes);
    if let Some(token) = &remote.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.context("cannot reach the host")?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "deploy refused ({status}): {}",
            body["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    println!(
        "deployed {name} {} (digest {})",
        body["plugin"]["version"].as_str().unwrap_or("?"),
        body["digest"].as_str().unwrap_or("?")
    );
    Ok(())
}

async fn list_plugins(remote: RemoteArgs) -> anyhow::Result<()> {
    let body: Value = reqwest::get(format!("{}/plugins", remote.url.trim_end_matches('/')))
        .await
        .context("cannot reach the host")?
        .json()
        .await?;
    println!(
        "{:<20} {:<16} {:<10} {:<9} {:<8} {:<14} FILE",
        "NAME", "KIND", "VERSION", "CONTRACT", "STATUS", "DIGEST"
    );
    for entry in body["plugins"].as_array().into_iter().flatten() {
        let text = |value: &Value| value.as_str().unwrap_or("-").to_string();
        let digest = text(&entry["digest"]);
        println!(
            "{:<20} {:<16} {:<10} {:<9} {:<8} {:<14} {}",
            text(&entry["plugin"]["name"]),
            text(&entry["plugin"]["kind"]),
            text(&entry["plugin"]["version"]),
            text(&entry["plugin"]["contract"]),
            text(&entry["status"]),
            &digest[..digest.len().min(12)],
            text(&entry["file"]),
        );
        if let Some(error) = entry["last_error"].as_str() {
            println!("    last error: {error}");
        }
    }
    Ok(())
}

async fn show_projections(remote: &RemoteArgs) -> anyhow::Result<()> {
    let body: Value = reqwest::get(format!("{}/projections", remote.url.trim_end_matches('/')))
        .await
        .context("cannot reach the host")?
        .json()
        .await?;
    println!(
        "{:<20} {:<8} {:<9} {:<12} {:<24} {:>10} {:>9} {:>8}",
        "NAME", "VERSION", "ROLE", "STATUS", "PROGRESS", "TO GO", "EV/S", "ETA"
    );
    for p in body["projections"].as_array().into_iter().flatten() {
        let done = p["progress"]["events_done"].as_u64().unwrap_or(0);
        let to_go = p["progress"]["events_to_go"].as_u64().unwrap_or(0);
        let total = done + to_go;
        let fraction = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        let filled = (fraction * 16.0).round() as usize;
        let bar = format!(
            "[{}{}] {:>3.0}%",
            "#".repeat(filled),
            "-".repeat(16 - filled),
            fraction * 100.0
        );
        let eta = p["progress"]["eta_seconds"]
            .as_f64()
            .map_or("-".to_string(), |s| format!("{s:.0}s"));
        println!(
            "{:<20} {:<8} {:<9} {:<12} {:<24} {:>10} {:>9.0} {:>8}",
            p["name"].as_str().unwrap_or("?"),
            format!("v{}.g{}", p["version"], p["generation"]),
            p["role"].as_str().unwrap_or("?"),
            p["status"].as_str().unwrap_or("?"),
            bar,
            to_go,
            p["progress"]["events_per_second"].as_f64().unwrap_or(0.0),
            eta,
        );
        if let Some(error) = p["error"].as_str() {
            println!("    error: {error}");
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
