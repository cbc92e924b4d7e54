//! The `languages` figures: the bank's command handler as a Rust, a TypeScript
//! (componentize-js) and a Python (componentize-py) component, each on its own host,
//! and the TypeScript and Python banks deployed together.
//!
//! Per language: the component's size; the first start of a host on an empty data
//! folder (the compile, until `/health` answers: the host serves only once its plugins
//! are loaded); `open-account` on new streams at 16 connections; the mean instantiate
//! and warm `handle` times from the host's own `/metrics`; the CPU time of a warm
//! `handle` in process, back to back and with other memory traffic between calls
//! (`call_cost.rs`); a re-deploy of the same
//! bytes (`PUT /plugins/bank-account`, answered once served); and restarts on the same
//! data folder, served from the compiled-code cache. When the Rust and TypeScript
//! figures both ran, TypeScript's rate as a share of Rust's, measured in alternating
//! rounds on the two hosts side by side (`languages-ts-share`). Then the mixed bank (TypeScript
//! `bank-account` and `account-balance`, Python `bank-totals` and `bank-queries`): its
//! first start, its RSS after that compile, after a restart from the cache, and after a
//! load on the restarted host.
//!
//! The TypeScript and Python components are the ones the test kit builds
//! (`tests/support/build.rs`, the files `make plugins-ts` and `make plugins-py` write);
//! without npm or python3 those figures say so and the Rust ones still run.

use super::*;

/// Restarts from the cache measured per language (the median is reported).
const RESTARTS: usize = 3;
/// Re-deploys of the same bytes measured per language (the median is reported).
const REDEPLOYS: usize = 3;
/// Connections of the command figure (the target is at 16).
const CONNS: usize = 16;
/// Rounds of the paired Rust/TypeScript figure; each runs both banks once, for a
/// quarter of the suite's seconds each: this machine's speed changes within seconds,
/// so many short rounds in alternating order pair the two rates better than a few long
/// ones.
const PAIRED_ROUNDS: usize = 9;

struct Language {
    key: &'static str,
    name: &'static str,
    file: PathBuf,
}

pub(super) async fn languages(ctx: &mut Ctx) -> Result<()> {
    use tessera_test_support::plugins;
    let group = "languages";
    let languages = [
        Language {
            key: "rust",
            name: "Rust",
            file: ctx.plugins.bank_account.clone(),
        },
        Language {
            key: "ts",
            name: "TypeScript",
            file: plugins::BANK_ACCOUNT_TS.into(),
        },
        Language {
            key: "py",
            name: "Python",
            file: plugins::BANK_ACCOUNT_PY.into(),
        },
    ];
    let mut rust_rate = None;
    let mut measured = Vec::new();
    for language in &languages {
        if !ctx.settings.runs(&format!("languages-{}", language.key)) {
            continue;
        }
        if !language.file.is_file() {
            ctx.push(
                Row::new(
                    &format!("languages-{}", language.key),
                    group,
                    format!("bank-account ({}): not built", language.name),
                    "",
                )
                .note(format!(
                    "{} is missing: the test kit builds it when npm (TypeScript) or python3 \
                     (Python) is there",
                    language.file.display()
                )),
            );
            continue;
        }
        let rate = one_language(ctx, language, rust_rate).await?;
        if language.key == "rust" {
            rust_rate = Some(rate);
        }
        measured.push(language.key);
    }
    if measured.contains(&"rust") && measured.contains(&"ts") {
        paired(ctx, &languages[0], &languages[1]).await?;
    }
    if ctx.settings.runs("languages-mixed") {
        let files = [
            ("bank-account", PathBuf::from(plugins::BANK_ACCOUNT_TS)),
            (
                "account-balance",
                PathBuf::from(plugins::ACCOUNT_BALANCE_TS),
            ),
            ("bank-totals", PathBuf::from(plugins::BANK_TOTALS_PY)),
            ("bank-queries", PathBuf::from(plugins::BANK_QUERIES_PY)),
        ];
        if let Some((_, missing)) = files.iter().find(|(_, file)| !file.is_file()) {
            ctx.push(
                Row::new("languages-mixed", group, "mixed bank: not built", "")
                    .note(format!("{} is missing", missing.display())),
            );
        } else {
            mixed(ctx, &files).await?;
        }
    }
    Ok(())
}

/// One language's figures; its commands per second.
async fn one_language(ctx: &mut Ctx, language: &Language, rust_rate: Option<f64>) -> Result<f64> {
    let group = "languages";
    let id = |figure: &str| format!("languages-{}-{figure}", language.key);
    let label = |what: &str| format!("{what} ({})", language.name);
    let durability = ctx.settings.durability.clone();
    let size_mb = std::fs::metadata(&language.file)?.len() as f64 / 1e6;
    let mut row = Row::new(&id("size"), group, label("bank-account component"), "MB");
    row.value = Some(size_mb);
    ctx.push(row.note(format!("{size_mb:.2} MB")));

    let role = format!("{}-first", language.key);
    let (data, plugins) = ctx.layout(
        &format!("{group}-{}", language.key),
        &[("bank-account", language.file.clone())],
    )?;
    let started = Instant::now();
    let host = ctx
        .start(group, &role, &data, &plugins, &durability, &[])
        .await?;
    let first = started.elapsed();
    let mut row = Row::new(
        &id("compile"),
        group,
        label("first start, compiling bank-account"),
        "ms",
    );
    row.value = Some(first.as_secs_f64() * 1e3);
    ctx.push(row);

    let sample = closed_loop(&host, CONNS, &ctx.settings, new_streams("lang")).await?;
    let row = Row::from_sample(
        &id("commands"),
        group,
        &label("open-account, new streams"),
        "commands/s",
        &sample,
    );
    let row = match (language.key, rust_rate) {
        ("rust", _) | (_, None) => row,
        (_, Some(rust)) => row.note(format!(
            "{:.0}% of Rust's",
            sample.per_second / rust * 100.0
        )),
    };
    ctx.push(row);

    let metrics = reqwest::get(format!("http://{}/metrics", host.addr))
        .await?
        .text()
        .await?;
    for (call, figure, what) in [
        ("instantiate", "instantiate", "instantiate, mean"),
        ("handle", "call", "warm handle call, mean"),
    ] {
        let mut row = Row::new(&id(figure), group, label(what), "ms");
        match call_mean(&metrics, "bank-account", call) {
            Some((mean, count)) => {
                row.value = Some(mean * 1e3);
                ctx.push(row.note(format!("{count} calls")));
            }
            None => ctx.push(row.note("not in /metrics")),
        }
    }

    let file = language.file.clone();
    let cost = tokio::task::spawn_blocking(move || call_cost::measure(&file)).await??;
    let mut row = Row::new(
        &id("call-cpu"),
        group,
        label("warm handle call, CPU in process"),
        "µs",
    );
    row.value = Some(cost.back_to_back_us);
    ctx.push(row.note(format!(
        "back to back; {:.1} µs with {} MiB of other memory traffic between calls \
         (call_cost.rs)",
        cost.between_work_us,
        call_cost::BETWEEN >> 20
    )));

    let bytes = std::fs::read(&language.file)?;
    let client = reqwest::Client::new();
    let mut redeploys = Vec::new();
    for _ in 0..REDEPLOYS {
        let started = Instant::now();
        let response = client
            .put(format!("http://{}/plugins/bank-account", host.addr))
            .body(bytes.clone())
            .send()
            .await?;
        let took = started.elapsed();
        let status = response.status();
        ensure!(
            status.is_success(),
            "re-deploy answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        redeploys.push(took.as_secs_f64() * 1e3);
    }
    let redeploy = median(&mut redeploys);
    let mut row = Row::new(
        &id("redeploy"),
        group,
        label("re-deploy of the same bytes"),
        "ms",
    );
    row.value = Some(redeploy);
    ctx.push(
        row.target("< 200 ms", redeploy < 200.0)
            .note(format!("median of {REDEPLOYS}: {redeploys:.1?} ms")),
    );
    ctx.stop(host).await;

    let mut restarts = Vec::new();
    let mut rss = None;
    for k in 0..RESTARTS {
        let role = format!("{}-restart-{k}", language.key);
        let started = Instant::now();
        let host = ctx
            .start(group, &role, &data, &plugins, &durability, &[])
            .await?;
        restarts.push(started.elapsed().as_secs_f64() * 1e3);
        rss = rss_mb(host.pid);
        ctx.stop(host).await;
    }
    let restart = median(&mut restarts);
    let mut row = Row::new(
        &id("restart"),
        group,
        label("restart, served from the compiled cache"),
        "ms",
    );
    row.value = Some(restart);
    ctx.push(row.target("< 200 ms", restart < 200.0).note(format!(
        "median of {RESTARTS}: {restarts:.1?} ms; RSS then {} MB",
        megabytes(rss)
    )));
    Ok(sample.per_second)
}

/// TypeScript's rate as a share of Rust's, measured in pairs: both banks' hosts run
/// (restarted from their compiled caches), and each of [`PAIRED_ROUNDS`] rounds loads
/// one then the other, in alternating order, for a quarter of the usual time each. The
/// machines these run on change speed, which moves two figures taken one after the
/// other apart; a share taken within one short round is moved far less. The median of
/// the rounds' shares is the figure.
async fn paired(ctx: &mut Ctx, rust: &Language, ts: &Language) -> Result<()> {
    let group = "languages";
    let durability = ctx.settings.durability.clone();
    let mut hosts = Vec::new();
    for language in [rust, ts] {
        let (data, plugins) = ctx.layout(
            &format!("{group}-{}", language.key),
            &[("bank-account", language.file.clone())],
        )?;
        let role = format!("{}-paired", language.key);
        hosts.push(
            ctx.start(group, &role, &data, &plugins, &durability, &[])
                .await?,
        );
    }
    let mut settings = ctx.settings.clone();
    settings.seconds = (settings.seconds / 4.0).max(1.0);
    let mut shares = Vec::new();
    let mut rounds = Vec::new();
    for round in 0..PAIRED_ROUNDS {
        let mut rates = [0.0; 2];
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            let sample = closed_loop(
                &hosts[index],
                CONNS,
                &settings,
                new_streams(if index == 0 { "pair-rust" } else { "pair-ts" }),
            )
            .await?;
            rates[index] = sample.per_second;
        }
        shares.push(rates[1] / rates[0] * 100.0);
        rounds.push(format!("{:.0}/{:.0}", rates[1], rates[0]));
    }
    for host in hosts {
        ctx.stop(host).await;
    }
    let share = median(&mut shares.clone());
    let mut row = Row::new(
        "languages-ts-share",
        group,
        "open-account, TypeScript's rate as a share of Rust's, paired",
        "%",
    );
    row.value = Some(share);
    ctx.push(row.target("≥ 50 %", share >= 50.0).note(format!(
        "median of {PAIRED_ROUNDS} rounds at {CONNS} connections, {:.1} s each: \
             TypeScript/Rust commands/s {}; shares {:.0?} %",
        settings.seconds,
        rounds.join(", "),
        shares
    )));
    Ok(())
}

/// The TypeScript and Python banks in one host: first start, RSS after the compile,
/// after a restart from the cache and after a load on it.
async fn mixed(ctx: &mut Ctx, files: &[(&'static str, PathBuf); 4]) -> Result<()> {
    let group = "languages";
    let durability = ctx.settings.durability.clone();
    let (data, plugins) = ctx.layout("languages-mixed", files)?;
    let started = Instant::now();
    let host = ctx
        .start(group, "mixed-first", &data, &plugins, &durability, &[])
        .await?;
    let first = started.elapsed().as_secs_f64() * 1e3;
    let compiled_rss = rss_mb(host.pid);
    let record = ctx.stop(host).await;
    let mut row = Row::new(
        "languages-mixed-compile",
        group,
        "first start, TypeScript and Python banks (4 components)",
        "ms",
    );
    row.value = Some(first);
    ctx.push(row.note(format!(
        "RSS after the compile {} MB, peak {} MB",
        megabytes(compiled_rss),
        megabytes(record.peak_rss_mb),
    )));

    let started = Instant::now();
    let host = ctx
        .start(group, "mixed-restart", &data, &plugins, &durability, &[])
        .await?;
    let restart = started.elapsed().as_secs_f64() * 1e3;
    let idle_rss = rss_mb(host.pid);
    wait_projections(&host, &["account-balance", "bank-totals"], 0).await?;
    let sample = closed_loop(&host, CONNS, &ctx.settings, new_streams("mixed")).await?;
    let loaded_rss = rss_mb(host.pid);
    let record = ctx.stop(host).await;
    let mut row = Row::new(
        "languages-mixed-restart",
        group,
        "restart, TypeScript and Python banks, from the cache",
        "ms",
    );
    row.value = Some(restart);
    ctx.push(row.target("< 200 ms", restart < 200.0));
    ctx.push(Row::from_sample(
        "languages-mixed-commands",
        group,
        "open-account, TypeScript and Python banks",
        "commands/s",
        &sample,
    ));
    let mut row = Row::new(
        "languages-mixed-rss",
        group,
        "RSS, TypeScript and Python banks, after a restart and a load",
        "MB",
    );
    row.value = loaded_rss;
    let row = match loaded_rss {
        Some(mb) => row.target("< 300 MB", mb < 300.0),
        None => row.note("VmRSS not readable"),
    };
    ctx.push(row.note(format!(
        "idle after the restart {} MB, peak {} MB",
        megabytes(idle_rss),
        megabytes(record.peak_rss_mb),
    )));
    Ok(())
}

/// The mean of one plugin call's histogram in Prometheus' text format, in seconds, and
/// how many calls it holds.
fn call_mean(metrics: &str, plugin: &str, call: &str) -> Option<(f64, u64)> {
    let find = |suffix: &str| -> Option<f64> {
        let name = format!("tessera_plugin_call_duration_seconds_{suffix}{{");
        metrics.lines().find_map(|line| {
            let rest = line.strip_prefix(&name)?;
            let (labels, value) = rest.split_once("} ")?;
            let wanted = [format!("plugin=\"{plugin}\""), format!("call=\"{call}\"")];
            wanted
                .iter()
                .all(|label| labels.split(',').any(|l| l == label))
                .then(|| value.trim().parse().ok())?
        })
    };
    let count = find("count")?;
    (count > 0.0).then(|| (find("sum").unwrap_or(0.0) / count, count as u64))
}

/// A size in MB for a note, `?` when it was not readable.
fn megabytes(mb: Option<f64>) -> String {
    mb.map_or("?".to_string(), |mb| format!("{mb:.0}"))
}

/// The RSS of a process now, in MB.
fn rss_mb(pid: u32) -> Option<f64> {
    proc_status_kib(pid, "VmRSS").map(|kib| kib as f64 / 1024.0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
