//! `tessera new`, end to end: the real binary scaffolds a command handler, a projection
//! of its events and a query handler reading that projection into a copy of the
//! plugins workspace; cargo builds the three for wasm32-wasip2 and runs the command
//! handler's native given/when/then tests; a running host takes the three as deploys
//! and serves them: a command is accepted, the projection catches up, and the query
//! answers with what it projected.
//!
//! In TypeScript and Python (`--lang ts|py`), the same three plugins are written in
//! each language into a folder of their own; the command handlers' native tests run,
//! the SDKs' builds make components of the six, and one host serves them all: each
//! language's three answer as the Rust ones do.
//!
//! The copy keeps the real workspace untouched (the other tests build it) while
//! exercising the default case, a crate made inside a plugins workspace. Builds share
//! `target/wasm-plugins` with the other plugin builds, so only the new crates and the
//! copied SDK compile.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::common::{Reply, TestHost, eventually, plugins};

const HANDLER: &str = "scaffold-tally";
const PROJECTION: &str = "scaffold-tally-totals";
const QUERIES: &str = "scaffold-tally-queries";

/// The repository's root (this crate is `host/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the repository")
        .to_path_buf()
}

/// Copies `from` into `to`, leaving out build output.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        // Build output and the TypeScript/Python plugins' installed packages: not
        // sources (node_modules also holds symlinks, which a copy need not follow).
        if ["target", "node_modules", "dist", "__pycache__"]
            .iter()
            .any(|skip| entry.file_name() == *skip)
        {
            continue;
        }
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(&path, to.join(entry.file_name()))
                .with_context(|| format!("copy {}", path.display()))?;
        }
    }
    Ok(())
}

/// Runs the real `tessera` binary.
fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run tessera")
}

/// A cargo command with the outer build's settings removed, as the plugins' own
/// build (`tests/support/build.rs`) does: they are not the plugins' business.
fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" {
            command.env_remove(key);
        }
    }
    command
}

#[track_caller]
fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scaffolded_plugins_build_test_deploy_and_answer() -> Result<()> {
    let dir = tempfile::TempDir::new()?;
    copy_tree(&root().join("wit"), &dir.path().join("wit"))?;
    copy_tree(&root().join("plugins"), &dir.path().join("plugins"))?;
    let plugins = dir.path().join("plugins");
    let workspace = plugins.to_str().context("a UTF-8 path")?;

    for args in [
        vec!["new", "command-handler", HANDLER],
        vec!["new", "projection", PROJECTION, "--from", HANDLER],
        vec!["new", "query-handler", QUERIES, "--from", PROJECTION],
    ] {
        let mut args = args;
        args.extend(["--dir", workspace]);
        assert_success(&args.join(" "), &tessera(&args));
    }
    for name in [HANDLER, PROJECTION, QUERIES] {
        assert!(
            plugins.join(name).join("README.md").is_file(),
            "{name} has no README"
        );
    }

    // It never overwrites, and it takes only kebab-case names.
    let lib = plugins.join(HANDLER).join("src/lib.rs");
    let written = std::fs::read_to_string(&lib)?;
    let again = tessera(&["new", "projection", HANDLER, "--dir", workspace]);
    assert!(
        !again.status.success(),
        "a second crate {HANDLER} was written"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&lib)?, written);
    let bad = tessera(&["new", "command-handler", "Tally_2", "--dir", workspace]);
    assert!(
        !bad.status.success(),
        "a name that is not kebab-case was taken"
    );
    assert!(!plugins.join("Tally_2").exists());

    // The crates joined the workspace, and `tessera dev` would build them with the
    // examples (and neither the SDK nor the test plugins).
    let members = std::fs::read_to_string(plugins.join("Cargo.toml"))?;
    for name in [HANDLER, PROJECTION, QUERIES] {
        assert!(
            members.contains(&format!("\"{name}\"")),
            "{name} not a member"
        );
    }
    let served = tessera::dev::plugin_crates(&plugins);
    let mut expected = vec![
        "account-balance",
        "bank-account",
        "bank-queries",
        "bank-totals",
        HANDLER,
        PROJECTION,
        QUERIES,
    ];
    expected.sort_unstable();
    assert_eq!(served, expected);

    // They build for wasm32-wasip2, and the command handler's tests run natively.
    let manifest = plugins.join("Cargo.toml");
    let manifest = manifest.to_str().context("a UTF-8 path")?;
    let target_dir = root().join("target/wasm-plugins");
    let target_dir = target_dir.to_str().context("a UTF-8 path")?;
    let build = cargo(&[
        "build",
        "--manifest-path",
        manifest,
        "--target",
        "wasm32-wasip2",
        "--profile",
        "dev-plugin",
        "--target-dir",
        target_dir,
        "-p",
        HANDLER,
        "-p",
        PROJECTION,
        "-p",
        QUERIES,
    ])
    .output()?;
    assert_success("building the scaffolded plugins", &build);
    let test = cargo(&[
        "test",
        "--manifest-path",
        manifest,
        "--target-dir",
        target_dir,
        "-p",
        HANDLER,
    ])
    .output()?;
    assert_success("the command handler's native tests", &test);
    let report = String::from_utf8_lossy(&test.stdout);
    assert!(report.contains("test result: ok. 4 passed"), "{report}");

    // A running host takes them as deploys and serves them, beside an example.
    let host = TestHost::start(&[plugins::BANK_ACCOUNT]).await?;
    let built = root().join("target/wasm-plugins/wasm32-wasip2/dev-plugin");
    for name in [HANDLER, PROJECTION, QUERIES] {
        let file = built.join(format!("{}.wasm", name.replace('-', "_")));
        let bytes = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
        let reply = host.deploy(name, bytes, None).await?;
        ensure!(reply.status == 200, "deploy {name}: {reply:?}");
    }

    records_and_answers(&host, HANDLER, QUERIES).await
}

/// Sends a scaffolded command handler `handler` two records and a refused one, and
/// asks the scaffolded query handler `queries` (reading a scaffolded projection of
/// those events) for the total: what every language's templates must do alike.
async fn records_and_answers(host: &TestHost, handler: &str, queries: &str) -> Result<()> {
    let command = format!("record-{handler}");
    let Reply {
        status,
        body: first,
        ..
    } = host.command(&command, "1", json!({ "amount": 5 })).await?;
    assert_eq!(status, 200, "{first}");
    let Reply {
        status,
        body: second,
        ..
    } = host.command(&command, "1", json!({ "amount": 7 })).await?;
    assert_eq!(status, 200, "{second}");
    let Reply {
        status,
        body: refused,
        ..
    } = host.command(&command, "1", json!({ "amount": 0 })).await?;
    crate::common::assert_error(status, &refused, 422, "validation_failed");
    let position = second["position"].as_u64().context("a position")?;

    // The projection is async: the query waits for the command's position, and the
    // answer is polled too, in case the projection was still being set up.
    let answer = eventually("the query to answer with the projected total", async || {
        let response = host
            .client
            .get(format!("{}/queries/{queries}?id=1", host.url))
            .header("tessera-min-position", position.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        match (status, body["total"].as_u64()) {
            (200, Some(12)) => Ok(body),
            _ => Err(format!("{status} {body}")),
        }
    })
    .await;
    assert_eq!(answer["id"], "1");
    assert_eq!(answer["recorded"], 2);
    let (status, missing) = host.get(&format!("/queries/{queries}?id=2")).await?;
    crate::common::assert_error(status, &missing, 404, "not_found");
    Ok(())
}

/// The plugins of the test in other languages, per language: a command handler, a
/// projection made `--from` it and a query handler made `--from` that projection.
const TS_TRIO: [&str; 3] = ["tally-ts", "tally-ts-totals", "tally-ts-queries"];
const PY_TRIO: [&str; 3] = ["tally-py", "tally-py-totals", "tally-py-queries"];

/// Runs `command`, failing the test with its output unless it succeeds; returns its
/// standard output.
fn run(what: &str, command: &mut Command) -> Result<String> {
    let output = command.output().with_context(|| format!("run {what}"))?;
    assert_success(what, &output);
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `tessera new --lang ts|py`, end to end: the real binary writes, in TypeScript and in
/// Python, a command handler, a projection of its events and a query handler of that
/// projection into a folder of their own; each command handler's native given/when/then
/// tests pass (`npm test`, `python -m unittest`); the SDKs' builds (`npm run build`,
/// `tessera-build-py`, installed by the test build) make components of the six; one
/// host serves them all, and each language's three answer as the Rust ones do.
#[tokio::test(flavor = "multi_thread")]
async fn scaffolded_typescript_and_python_plugins_build_and_answer() -> Result<()> {
    let dir = tempfile::TempDir::new()?;
    let into = dir.path().to_str().context("a UTF-8 path")?;
    for (lang, [handler, projection, queries]) in [("ts", TS_TRIO), ("py", PY_TRIO)] {
        for args in [
            ["new", "command-handler", handler, "--lang", lang].as_slice(),
            &[
                "new",
                "projection",
                projection,
                "--lang",
                lang,
                "--from",
                handler,
            ],
            &[
                "new",
                "query-handler",
                queries,
                "--lang",
                lang,
                "--from",
                projection,
            ],
        ] {
            let mut args = args.to_vec();
            args.extend(["--dir", into]);
            assert_success(&args.join(" "), &tessera(&args));
        }
    }
    let folder = |name: &str| dir.path().join(name);
    for name in TS_TRIO {
        for file in [
            "package.json",
            "package-lock.json",
            "tsconfig.json",
            "src/index.ts",
            "README.md",
        ] {
            assert!(folder(name).join(file).is_file(), "{name} has no {file}");
        }
    }
    for name in PY_TRIO {
        for file in ["app.py", "README.md"] {
            assert!(folder(name).join(file).is_file(), "{name} has no {file}");
        }
    }
    assert!(folder(TS_TRIO[0]).join("test/rules.test.ts").is_file());
    assert!(folder(PY_TRIO[0]).join("tests/test_app.py").is_file());

    // Each language's work runs on a thread of its own: the builds are long and each
    // mostly uses one core.
    let out = dir.path().join("built");
    std::fs::create_dir_all(&out)?;
    let python = root().join("target/py-venv/bin/python");
    ensure!(
        python.exists(),
        "{} is missing: the test build makes it (python3 is needed)",
        python.display()
    );
    let typescript = {
        let (folder, out) = (dir.path().to_path_buf(), out.clone());
        std::thread::spawn(move || -> Result<String> {
            let tests = run(
                "npm test",
                Command::new("npm")
                    .arg("test")
                    .current_dir(folder.join(TS_TRIO[0])),
            )?;
            for name in TS_TRIO {
                run(
                    &format!("npm run build in {name}"),
                    Command::new("npm")
                        .args(["run", "build"])
                        .current_dir(folder.join(name)),
                )?;
                std::fs::copy(
                    folder.join(name).join(format!("dist/{name}.wasm")),
                    out.join(format!("{name}.wasm")),
                )?;
            }
            Ok(tests)
        })
    };
    // The tests find the SDK by the absolute path `tessera new` wrote (the folder is not
    // beside it), whichever Python runs them.
    let mut unittest = Command::new(&python);
    unittest
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(folder(PY_TRIO[0]));
    let output = unittest.output()?;
    assert_success("the Python command handler's native tests", &output);
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(
        report.contains("Ran 4 tests") && report.contains("OK"),
        "{report}"
    );
    for name in PY_TRIO {
        run(
            &format!("tessera-build-py {name}"),
            Command::new(&python)
                .arg(root().join("plugins/sdk-py/bin/tessera-build-py"))
                .arg(folder(name))
                .arg("--out")
                .arg(out.join(format!("{name}.wasm"))),
        )?;
    }
    let ts_tests = typescript.join().expect("the TypeScript thread")?;
    assert!(
        ts_tests.contains("pass 4") && ts_tests.contains("fail 0"),
        "{ts_tests}"
    );

    let files: Vec<String> = TS_TRIO
        .iter()
        .chain(&PY_TRIO)
        .map(|name| out.join(format!("{name}.wasm")).display().to_string())
        .collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let host = TestHost::start(&files).await?;
    records_and_answers(&host, TS_TRIO[0], TS_TRIO[2]).await?;
    records_and_answers(&host, PY_TRIO[0], PY_TRIO[2]).await
}
