# Tessera's entry points. `make run` and `make test` work on a fresh machine that has
# only the Rust toolchain: they install the wasm32-wasip2 target themselves.
SHELL := bash
CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
WASM_DIR := target/wasm-plugins
# The example plugins that `make run` serves. Test-only plugins (plugins/testing/)
# are built by the tests themselves and never land in target/plugins.
EXAMPLES := bank-account account-balance bank-totals bank-queries
LISTEN ?= 127.0.0.1:8080
DATA ?= data

.PHONY: setup browser postgres plugins run dev test test-postgres bench lint fmt clean

setup:
	rustup target add $(WASM_TARGET)

# The dashboard's browser test (tests/dashboard_browser.rs) drives Debian's headless
# Chromium through chromedriver; installed here when missing (needs root, as CI runs).
browser:
	if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

# A local PostgreSQL for the PostgreSQL event store's tests (tests/postgres_store.rs,
# docs/postgres.md): installs the server when missing, makes a cluster in
# target/postgres (trust authentication, port 55432) unless there is one, starts it
# unless it runs, and prints its URL, the default of TESSERA_TEST_POSTGRES.
postgres:
	bash tests/postgres/start.sh

plugins: setup
	$(CARGO) build --manifest-path plugins/Cargo.toml --release --target $(WASM_TARGET) \
		--target-dir $(WASM_DIR) $(addprefix -p ,$(EXAMPLES))
	mkdir -p target/plugins
	for plugin in $(EXAMPLES); do \
		cp $(WASM_DIR)/$(WASM_TARGET)/release/$${plugin//-/_}.wasm target/plugins/$$plugin.wasm; \
	done

# The TypeScript plugins (the SDK in plugins/sdk-ts, docs/plugins/typescript.md), built
# with Node 20+ and npm into target/plugins-ts. `npm ci` runs only when a lockfile is
# newer than the install (node_modules/.package-lock.json); the tests build the same
# files themselves (tests/support/build.rs).
TS_PLUGINS := bank-account-ts account-balance-ts bank-queries-ts
.PHONY: plugins-ts npm-ts test-ts ts-sdk
npm-ts:
	for dir in plugins/sdk-ts $(addprefix plugins/,$(TS_PLUGINS)); do \
		if [ ! -f $$dir/node_modules/.package-lock.json ] || \
			[ $$dir/package-lock.json -nt $$dir/node_modules/.package-lock.json ]; then \
			(cd $$dir && npm ci --no-audit --no-fund) || exit 1; \
		fi; \
	done

plugins-ts: npm-ts
	mkdir -p target/plugins-ts
	for plugin in $(TS_PLUGINS); do \
		(cd plugins/$$plugin && npm run --silent build -- --out ../../target/plugins-ts/$$plugin.wasm) || exit 1; \
	done

# The TypeScript SDK's and plugins' own tests, natively with `node --test` and no host
# (the plugins' given/when/then from `@tessera/sdk/testing`; `npm test` is the SDK's
# tessera-test: type check, bundle, run).
TS_TESTED := bank-account-ts
test-ts: npm-ts
	for dir in sdk-ts $(TS_TESTED); do (cd plugins/$$dir && npm test) || exit 1; done

# The Python plugins (the SDK in plugins/sdk-py, docs/plugins/python.md), built with
# componentize-py into target/plugins-py. componentize-py is installed from the pinned
# plugins/sdk-py/requirements.txt into target/py-venv, which is reused while it was made
# from that very file (its copy inside says so); the tests build the same files
# themselves (tests/support/build.rs). Then the SDK's own tests and each example's
# given/when/then tests (a plugin's tests/ folder), natively.
PY_PLUGINS := bank-account-py bank-totals-py bank-queries-py
PY_VENV := target/py-venv
.PHONY: plugins-py py-venv
plugins-py: py-venv
	mkdir -p target/plugins-py
	for plugin in $(PY_PLUGINS); do \
		$(PY_VENV)/bin/python plugins/sdk-py/bin/tessera-build-py plugins/$$plugin \
			--out target/plugins-py/$$plugin.wasm || exit 1; \
	done
	PYTHONDONTWRITEBYTECODE=1 $(PY_VENV)/bin/python -m unittest discover -s plugins/sdk-py/tests
	for plugin in $(PY_PLUGINS); do \
		if [ -d plugins/$$plugin/tests ]; then \
			PYTHONDONTWRITEBYTECODE=1 $(PY_VENV)/bin/python -m unittest discover -s plugins/$$plugin/tests || exit 1; \
		fi; \
	done

# The TypeScript SDK's packages alone (what a TypeScript plugin's build needs), with
# `npm ci` only when its lockfile is newer than the install.
ts-sdk:
	if [ ! -f plugins/sdk-ts/node_modules/.package-lock.json ] || \
		[ plugins/sdk-ts/package-lock.json -nt plugins/sdk-ts/node_modules/.package-lock.json ]; then \
		(cd plugins/sdk-ts && npm ci --no-audit --no-fund) || exit 1; \
	fi

# componentize-py in target/py-venv, made again only when the pin changed.
py-venv:
	if ! cmp -s plugins/sdk-py/requirements.txt $(PY_VENV)/requirements.txt; then \
		rm -rf $(PY_VENV) && python3 -m venv $(PY_VENV) && \
		$(PY_VENV)/bin/pip install --quiet --disable-pip-version-check -r plugins/sdk-py/requirements.txt && \
		cp plugins/sdk-py/requirements.txt $(PY_VENV)/requirements.txt || exit 1; \
	fi

run: plugins
	$(CARGO) run -p tessera -- serve --data $(DATA) --plugins target/plugins --listen $(LISTEN)

# Serves every plugin directly under plugins/ (the examples, and any written by `tessera
# new`: Rust crates, TypeScript and Python plugins) and rebuilds one whenever its source
# changes. The TypeScript and Python examples are translations of Rust ones under the
# same plugin names, so they are skipped (DEV_SKIP=) to serve them instead. The
# TypeScript SDK and the Python venv are installed first when npm and python3 are there.
DEV_SKIP ?= bank-account-ts account-balance-ts bank-queries-ts bank-account-py bank-totals-py bank-queries-py
dev: plugins
	if command -v npm >/dev/null; then $(MAKE) ts-sdk; fi
	if command -v python3 >/dev/null; then $(MAKE) py-venv; fi
	$(CARGO) run -p tessera -- dev --data $(DATA) --plugins target/plugins --listen $(LISTEN) \
		--sources plugins --target-dir $(WASM_DIR) $(addprefix --skip ,$(DEV_SKIP))

# The end-to-end tests run real servers and real processes on what may be a shared,
# noisy machine. With cargo-nextest (on the project's machines) each test runs in its
# own process and a failed test is run once more; nextest reports it as FLAKY, so a
# flaky test is visible, not hidden. Without nextest, plain `cargo test`. Then the
# plugin SDKs' and the bank examples' own tests, natively (given/when/then, no host).
test: setup browser postgres
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --retries 1 --no-fail-fast; \
	else \
		$(CARGO) test --workspace; \
	fi
	$(MAKE) test-postgres
	$(MAKE) schemathesis
	$(CARGO) test --manifest-path plugins/Cargo.toml --target-dir target/native-plugins \
		-p tessera-sdk -p bank-account
	$(MAKE) test-ts

# The command-path and read-side end-to-end tests once more, each host on a fresh
# PostgreSQL database of the `make postgres` server instead of SQLite
# (TESSERA_TEST_STORE=postgres, read by the test kit's TestHost). Only those two files:
# the rest exercise what does not depend on the store, or SQLite itself (as do the two
# snapshot tests, which edit events.db, hence skipped).
POSTGRES_PASS := commands_http:: read_side_http::
test-postgres: postgres
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		TESSERA_TEST_STORE=postgres $(CARGO) nextest run -p tessera --test e2e --retries 1 \
			--no-fail-fast -E '($(foreach t,$(POSTGRES_PASS),test(/^$(t)/) |) none()) - test(/snapshot/)'; \
	else \
		TESSERA_TEST_STORE=postgres $(CARGO) test -p tessera --test e2e -- $(POSTGRES_PASS) \
			--skip snapshot; \
	fi

# The OpenAPI description against the real host (tests/schemathesis/run.sh):
# schemathesis, pinned in tests/schemathesis/requirements.txt and installed in
# target/schemathesis-venv (reused while the pins are unchanged), sends generated
# requests, valid and invalid, to the debug host serving the example plugins, and fails
# on any answer the description does not state (`--checks all`).
.PHONY: schemathesis
schemathesis: plugins
	# The binary as the tests build it (`cargo build --bin` alone unifies dependency
	# features differently and would rebuild most dependencies after the tests).
	$(CARGO) test --workspace --no-run
	TESSERA_BIN=target/debug/tessera bash tests/schemathesis/run.sh

# The soak (tests/soak.rs, an ignored test, so `make test` skips it): the host binary
# with the example plugins under a mixed load (commands, queries, deploys, rebuilds) for
# TESSERA_SOAK_SECONDS (600), SIGKILLed at least TESSERA_SOAK_KILLS times (100) at moments
# drawn from TESSERA_SOAK_SEED (printed), then every invariant checked: PASS or FAIL each,
# and the summary in target/soak/summary.json (docs/soak.md). It runs the dev-profile
# host (target/debug/tessera), whose dependencies are optimised: it restarts in well
# under a second, so a release build (~10 minutes here) buys nothing for 100 kills.
.PHONY: soak
soak: setup
	$(CARGO) test -p tessera --test e2e soak:: -- --ignored --nocapture

# Benchmarks print figures; they assert nothing. The suite (host/benches/suite.rs) runs
# the release binary with the release plugins over real HTTP, prints a table against the
# performance targets and writes target/bench/results.json; then the other benches run.
# TESSERA_BENCH_SECONDS=2 shortens every figure, TESSERA_BENCH_ONLY=<figure> runs one
# (the suite's header lists them and the other settings). The PostgreSQL figures run on
# the `make postgres` server (TESSERA_BENCH_POSTGRES= skips them); the languages figures
# use the TypeScript and Python plugins the test kit builds.
TESSERA_BENCH_POSTGRES ?= postgres://tessera@127.0.0.1:55432/postgres
bench: plugins postgres
	$(CARGO) build --release -p tessera --bin tessera
	TESSERA_BENCH_POSTGRES=$(TESSERA_BENCH_POSTGRES) $(CARGO) bench -p tessera --no-fail-fast

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path plugins/Cargo.toml --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path plugins/Cargo.toml --workspace --target $(WASM_TARGET) \
		--target-dir $(WASM_DIR) -- -D warnings

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path plugins/Cargo.toml --all

clean:
	$(CARGO) clean
