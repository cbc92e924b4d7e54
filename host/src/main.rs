//! The `tessera` command: parses arguments and calls the library.
#![allow(clippy::print_stdout)] // a command-line tool prints its answers

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

use tessera::event_store::Durability;
use tessera::plugin::{Limits, PluginLimits};

mod allocator;

/// mimalloc for the small churn, the C allocator for large blocks (`allocator.rs`).
#[global_allocator]
static GLOBAL: allocator::Split = allocator::Split;

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "A CQRS host for WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
    /// How log lines are written to stderr: `text` for people, `json` (one object per
    /// line, with the request id and plugin as fields) for log collectors. `RUST_LOG`
    /// filters them, e.g. `RUST_LOG=info,plugin=debug`.
    #[arg(long, global = true, default_value = "text", value_enum)]
    log_format: LogFormat,
}

/// A way of authenticating callers (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthMethod {
    Jwt,
    ApiKeys,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Serve the plugins in a folder over HTTP.
    Serve(ServeArgs),
    /// Compile a component for a host's engine: what a host runs in a child process to
    /// keep the compiler's memory out of its own. Reads the `.wasm` on standard input and
    /// writes the compiled code to `--out`; exits with status 3 and the reason on
    /// standard error when the component is not valid.
    #[command(hide = true)]
    CompileComponent {
        #[arg(long)]
        out: PathBuf,
        /// The largest memory of a pooled slot in the host, in bytes (absent: no pooling).
        #[arg(long)]
        pooled_memory: Option<u64>,
    },
    /// Serve, and rebuild a plugin whenever its source changes (development).
    Dev {
        #[command(flatten)]
        serve: ServeArgs,
        /// The folder of plugin sources to watch and build: Tessera's `plugins/` (a
        /// Rust plugins workspace, with TypeScript and Python plugins beside the crates)
        /// or any folder of plugin folders.
        #[arg(long, default_value = "plugins")]
        sources: PathBuf,
        /// The cargo target directory for plugin builds; TypeScript and Python builds
        /// write under its `tessera-dev/`.
        #[arg(long, default_value = "target/wasm-plugins")]
        target_dir: PathBuf,
        /// The plugins to build and serve, by folder name (repeatable). By default every
        /// plugin directly under `--sources`: a folder holding a `cdylib` crate of the
        /// same name, a TypeScript plugin (a package.json depending on @tessera/sdk) or a
        /// Python plugin (an app.py importing tessera_sdk), looked up again on every
        /// change, so a plugin `tessera new` writes while this runs is served too.
        #[arg(long = "crate", visible_alias = "plugin")]
        crates: Vec<String>,
        /// A plugin folder never to build nor serve (repeatable), e.g. a translation of
        /// another plugin under the same plugin name.
        #[arg(long)]
        skip: Vec<String>,
        /// The Python that runs the Python SDK's build, beside componentize-py (`make
        /// plugins-py` makes it).
        #[arg(long, default_value = "target/py-venv/bin/python")]
        python: PathBuf,
    },
    /// Write a new plugin: a small working plugin of KIND, with a README (and, for a
    /// command handler, given/when/then tests that run natively: `cargo test`, `npm
    /// test`, `python3 -m unittest`).
    New {
        /// command-handler, projection or query-handler.
        #[arg(value_enum)]
        kind: tessera::scaffold::Kind,
        /// The crate's and the plugin's name, in kebab-case (gift-card).
        name: String,
        /// The plugin's language: rust (a crate), ts (an npm package on the TypeScript
        /// SDK) or py (a folder with an app.py on the Python SDK); every kind is written
        /// in each, and they fit together across languages.
        #[arg(long, value_enum, default_value = "rust")]
        lang: tessera::scaffold::Lang,
        /// The folder the crate's folder is made in. In a plugins workspace (such as
        /// Tessera's `plugins/`) the crate joins its members; elsewhere it is a
        /// workspace of its own and finds the SDK with `--sdk`.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
        /// What the plugin reads: for a projection, the command handler whose events
        /// it consumes; for a query handler, the projection it reads. By default NAME.
        #[arg(long)]
        from: Option<String>,
        /// The `tessera-sdk` crate (`plugins/sdk` of Tessera's repository), for a crate
        /// outside a plugins workspace; with `--lang ts`, the TypeScript SDK
        /// (`plugins/sdk-ts`), by default `sdk-ts` in DIR if there; with `--lang py`, the
        /// Python SDK a command handler's tests import (`plugins/sdk-py`), by default
        /// `sdk-py` in DIR if there. By default the SDK this binary was built with.
        #[arg(long)]
        sdk: Option<PathBuf>,
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
    /// Copy a running host's event log, read models and plugins into DEST, online
    /// (`POST /admin/backup`); serve the copy with `tessera serve --data DEST/data
    /// --plugins DEST/plugins`.
    Backup {
        /// A folder that does not exist or is empty, on the host's machine (a relative
        /// path is taken from this command's working directory).
        dest: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
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
    /// Where the event log is: `sqlite` (`events.db` in the data folder), or a
    /// PostgreSQL URL (`postgres://user:password@host:port/db`) that several hosts
    /// share, each with its own data folder (docs/postgres.md).
    #[arg(
        long,
        default_value = "sqlite",
        env = "TESSERA_STORE",
        hide_env_values = true
    )]
    store: tessera::StoreChoice,
    /// `full`: an acknowledged command survives power loss (an fsync per group
    /// commit). `normal`: no fsync per commit; a power loss (not a process crash) may
    /// lose the last acknowledged commands.
    #[arg(long, default_value = "full", value_parser = parse_durability)]
    durability: Durability,
    /// The bearer token for the admin endpoints (deploy, remove, rollback). Without
    /// one they answer only to clients on loopback.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Authenticate the callers of commands, queries and the log: `jwt`, `api-keys`,
    /// or both (`jwt,api-keys`). Off by default: anyone who reaches the host may call,
    /// and the principal is the `Tessera-Principal` header. On, a caller sends
    /// `Authorization: Bearer <token>` and the principal is the token's.
    #[arg(long, value_delimiter = ',', value_enum)]
    auth: Vec<AuthMethod>,
    /// `--auth jwt`: a file holding the HS256 secret (at least 32 bytes).
    #[arg(long)]
    jwt_hs256_secret_file: Option<PathBuf>,
    /// `--auth jwt`: a PEM file holding the RS256 public key.
    #[arg(long)]
    jwt_rs256_public_key: Option<PathBuf>,
    /// `--auth jwt`: a JWKS file; a token's `kid` picks its key.
    #[arg(long)]
    jwt_jwks: Option<PathBuf>,
    /// `--auth jwt`: the `iss` every token must carry.
    #[arg(long)]
    jwt_issuer: Option<String>,
    /// `--auth jwt`: the `aud` every token must include (unchecked when not given).
    #[arg(long)]
    jwt_audience: Option<String>,
    /// `--auth api-keys`: the JSON file of keys,
    /// `[{"key_sha256": "<hex>", "principal": "...", "roles": [...]}]`.
    #[arg(long)]
    api_keys_file: Option<PathBuf>,
    /// With `--auth`: a role every caller must carry (`roles` claim, or the key's
    /// roles); a verified caller without it is refused with 403.
    #[arg(long)]
    auth_required_role: Option<String>,
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
    /// Limits for one plugin: `NAME:deadline_ms=2000,memory_mb=128,disk_mb=256,reuse=0`
    /// (repeatable).
    #[arg(long = "plugin-limit", value_parser = parse_plugin_limit)]
    plugin_limits: Vec<(String, PluginLimits)>,
    /// Allocate plugin instances on demand instead of from a pool.
    #[arg(long)]
    no_pooling: bool,
    /// How many calls (commands, queries) one command handler or query handler
    /// instance may serve before it is replaced (after a failed call it is replaced at
    /// once); 0 for a fresh instance per call. A plugin's globals survive between the
    /// calls one instance serves. Per plugin: `--plugin-limit NAME:reuse=0`.
    #[arg(long, default_value_t = 1000)]
    instance_reuse: u32,
    /// How long idempotency keys are kept, in hours (0: forever). A command sent
    /// again with its key within this time is answered from the first one.
    #[arg(long, default_value_t = 24)]
    idempotency_retention_hours: u64,
    /// Record no metrics; `GET /metrics` answers 404.
    #[arg(long)]
    no_metrics: bool,
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
            "reuse" => {
                limits.reuse = Some(u32::try_from(number).map_err(|_| "reuse is too large")?)
            }
            other => {
                return Err(format!(
                    "unknown limit {other:?}; use deadline_ms, memory_mb, disk_mb or reuse"
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

impl RemoteArgs {
    fn remote(&self) -> tessera::remote::Remote {
        tessera::remote::Remote {
            url: self.url.clone(),
            token: self.token.clone(),
        }
    }
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
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        );
    match cli.log_format {
        LogFormat::Text => logs.init(),
        // Fields at the top level, the spans (the request and its id) as a list.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match cli.command {
        Commands::Serve(args) => serve(args).await,
        Commands::CompileComponent { out, pooled_memory } => compile_component(&out, pooled_memory),
        Commands::Dev {
            serve: args,
            sources,
            target_dir,
            crates,
            skip,
            python,
        } => {
            let dev = tessera::dev::DevLoop {
                sources,
                plugins_dir: args.plugins.clone(),
                target_dir,
                crates,
                skip,
                python,
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
        Commands::Deploy { file, name, remote } => {
            println!("{}", remote.remote().deploy(&file, name).await?);
            Ok(())
        }
        Commands::Plugins { remote } => {
            println!("{}", remote.remote().plugins().await?);
            Ok(())
        }
        Commands::New {
            kind,
            name,
            lang,
            dir,
            from,
            sdk,
        } => {
            let request = tessera::scaffold::Request {
                kind,
                lang,
                name,
                dir,
                from,
                sdk,
            };
            println!("{}", tessera::scaffold::new(&request)?);
            Ok(())
        }
        Commands::Backup { dest, remote } => {
            let dest = std::path::absolute(&dest)
                .with_context(|| format!("cannot tell where {} is", dest.display()))?;
            let summary =
                tessera::backup::request(&remote.url, remote.token.as_deref(), &dest).await?;
            println!("{summary}");
            Ok(())
        }
        Commands::Projections { remote, watch } => loop {
            println!("{}", remote.remote().projections().await?);
            if !watch {
                break Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!();
        },
    }
}

fn compile_component(out: &std::path::Path, pooled_memory: Option<u64>) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    use tessera::plugin::{COMPILE_REFUSED_EXIT, CompileFailure, EngineSpec};
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("cannot read the component")?;
    match tessera::plugin::compile_component(EngineSpec { pooled_memory }, &bytes, out) {
        Ok(()) => Ok(()),
        Err(CompileFailure::Refused(reason)) => {
            let _ = writeln!(std::io::stderr(), "{reason}");
            std::process::exit(COMPILE_REFUSED_EXIT);
        }
        Err(CompileFailure::Failed(reason)) => anyhow::bail!(reason),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let auth = auth_config(&args)?;
    let mut config = tessera::Config::new(args.data, args.plugins);
    config.store = args.store;
    config.durability = args.durability;
    config.auth = auth;
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
        instance_reuse: args.instance_reuse,
        per_plugin: args.plugin_limits.into_iter().collect(),
        // This very executable compiles components in a child process; without it
        // (it cannot be found), in the host.
        compiler: std::env::current_exe().ok(),
        ..Limits::default()
    };
    config.shutdown_timeout = Duration::from_millis(args.shutdown_timeout_ms);
    config.idempotency_retention =
        Duration::from_secs(args.idempotency_retention_hours.saturating_mul(3600));
    config.metrics = !args.no_metrics;
    match tessera::serve(listener, config, shutdown_signal()).await {
        // What still runs is abandoned: exit now rather than wait for it.
        Err(error @ tessera::ServeError::ShutdownTimedOut(_)) => {
            tracing::error!(%error, "exiting");
            std::process::exit(1);
        }
        result => Ok(result?),
    }
}

/// The authentication `--auth` and its flags ask for. A key flag without the method it
/// belongs to is an error rather than silently unused: the operator meant auth on.
fn auth_config(args: &ServeArgs) -> anyhow::Result<tessera::auth::AuthConfig> {
    let jwt = args.auth.contains(&AuthMethod::Jwt);
    let api_keys = args.auth.contains(&AuthMethod::ApiKeys);
    let jwt_flags = args.jwt_hs256_secret_file.is_some()
        || args.jwt_rs256_public_key.is_some()
        || args.jwt_jwks.is_some()
        || args.jwt_issuer.is_some()
        || args.jwt_audience.is_some();
    if jwt_flags && !jwt {
        anyhow::bail!("the --jwt-* flags need --auth jwt");
    }
    if args.api_keys_file.is_some() && !api_keys {
        anyhow::bail!("--api-keys-file needs --auth api-keys");
    }
    if api_keys && args.api_keys_file.is_none() {
        anyhow::bail!("--auth api-keys needs --api-keys-file");
    }
    if args.auth_required_role.is_some() && args.auth.is_empty() {
        anyhow::bail!("--auth-required-role needs --auth");
    }
    Ok(tessera::auth::AuthConfig {
        jwt: jwt.then(|| tessera::auth::JwtConfig {
            hs256_secret_file: args.jwt_hs256_secret_file.clone(),
            rs256_public_key: args.jwt_rs256_public_key.clone(),
            jwks: args.jwt_jwks.clone(),
            issuer: args.jwt_issuer.clone(),
            audience: args.jwt_audience.clone(),
        }),
        api_keys_file: args.api_keys_file.clone(),
        required_role: args.auth_required_role.clone(),
    })
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
