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

.PHONY: setup browser plugins run dev test bench lint fmt clean

setup:
	rustup target add $(WASM_TARGET)

# The dashboard's browser test (tests/dashboard_browser.rs) drives Debian's headless
# Chromium through chromedriver; installed here when missing (needs root, as CI runs).
browser:
	if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

plugins: setup
	$(CARGO) build --manifest-path plugins/Cargo.toml --release --target $(WASM_TARGET) \
		--target-dir $(WASM_DIR) $(addprefix -p ,$(EXAMPLES))
	mkdir -p target/plugins
	for plugin in $(EXAMPLES); do \
		cp $(WASM_DIR)/$(WASM_TARGET)/release/$${plugin//-/_}.wasm target/plugins/$$plugin.wasm; \
	done

run: plugins
	$(CARGO) run -p tessera -- serve --data $(DATA) --plugins target/plugins --listen $(LISTEN)

# Serves every plugin crate directly under plugins/ (the examples, and any written by
# `tessera new`) and rebuilds one whenever its source changes.
dev: plugins
	$(CARGO) run -p tessera -- dev --data $(DATA) --plugins target/plugins --listen $(LISTEN) \
		--sources plugins --target-dir $(WASM_DIR)

# The end-to-end tests run real servers and real processes on what may be a shared,
# noisy machine. With cargo-nextest (on the project's machines) each test runs in its
# own process and a failed test is run once more; nextest reports it as FLAKY, so a
# flaky test is visible, not hidden. Without nextest, plain `cargo test`. Then the
# plugin SDK's and the bank example's own tests, natively (given/when/then, no host).
test: setup browser
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --retries 1 --no-fail-fast; \
	else \
		$(CARGO) test --workspace; \
	fi
	$(CARGO) test --manifest-path plugins/Cargo.toml --target-dir target/native-plugins \
		-p tessera-sdk -p bank-account

# Benchmarks print figures; they assert nothing. The suite (host/benches/suite.rs) runs
# the release binary with the release plugins over real HTTP, prints a table against the
# performance targets and writes target/bench/results.json; then the other benches run.
# TESSERA_BENCH_SECONDS=2 shortens every figure, TESSERA_BENCH_ONLY=<figure> runs one
# (the suite's header lists them and the other settings).
bench: plugins
	$(CARGO) build --release -p tessera --bin tessera
	$(CARGO) bench -p tessera --no-fail-fast

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
