# synctrail — every set-up step lives here, so a fresh machine needs only `make demo` and `make test`.
CARGO ?= cargo
HOME_DIR ?= .synctrail

.PHONY: demo test bench build check lint fmt clean

## The whole pipeline on the embedded backend: 20,000 messy events, faults injected, convergence checked.
demo:
	$(CARGO) run --locked --release -p synctrail-cli -- --home $(HOME_DIR) demo

## Every test: unit tests, the conformance suite on both backends (AWS through a private moto server that
## scripts/with-moto.sh installs, starts on a free loopback port and stops), the protocol rules, bad input, the
## AWS pipeline and the seeded simulation.
test:
	CARGO=$(CARGO) scripts/with-moto.sh scripts/test-all.sh

## The benchmark on the embedded backend: events/s, latency percentiles, CPU time per event.
bench:
	$(CARGO) run --locked --release -p synctrail-cli -- --home $(HOME_DIR) bench

## Deployable Lambda zips: every binary of every function crate under functions/ (found with `cargo metadata`, so a
## new function is picked up), built with `cargo lambda build --release` into target/lambda/<bin>/bootstrap.zip.
##   make build              x86_64: the fallback, builds on any machine of ours
##   make build ARCH=arm64   what deploy uses (the SAM template runs the functions on arm64); needs the rustup target
##                           aarch64-unknown-linux-gnu, which cannot be counted on everywhere
## cargo-lambda's own release optimizations are off (--disable-optimizations): they set panic = "abort", and the
## processor catches a record's panic to fail only that record; the workspace's [profile.release] applies instead.
## CI does not run this target: it builds release only once.
PYTHON ?= python3
ARCH ?= x86_64
CARGO_LAMBDA_VERSION := 1.9.2
ZIGLANG_VERSION := 0.17.1
LAMBDA_FUNCTIONS_PY := import glob, json, os, sys; \
  m = json.load(sys.stdin); \
  pk = {os.path.dirname(os.path.realpath(p["manifest_path"])): p for p in m["packages"]}; \
  dirs = [os.path.dirname(os.path.realpath(f)) for f in sorted(glob.glob("functions/*/Cargo.toml"))]; \
  miss = [d for d in dirs if d not in pk]; \
  miss and sys.exit("make build: not workspace members (add them to Cargo.toml): " + ", ".join(miss)); \
  sel = [a for d in dirs for t in pk[d]["targets"] if "bin" in t["kind"] for a in ("-p", pk[d]["name"], "--bin", t["name"])]; \
  sel or sys.exit("make build: no binary target in functions/*/Cargo.toml"); \
  print(" ".join(sel))

.PHONY: lambda-tools
build: lambda-tools
	@case "$(ARCH)" in \
	  x86_64|x86-64|amd64) flag=--x86-64 ;; \
	  arm64|aarch64) flag=--arm64; \
	    if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then \
	      echo "make build ARCH=arm64: the rustup target aarch64-unknown-linux-gnu is missing; add it with" \
	        "'rustup target add aarch64-unknown-linux-gnu' (it downloads from the Rust distribution server)," \
	        "or build the x86_64 fallback with 'make build'" >&2; exit 1; \
	    fi ;; \
	  *) echo "make build: ARCH=$(ARCH) is not x86_64 or arm64" >&2; exit 2 ;; \
	esac; \
	sel="$$($(CARGO) metadata --locked --no-deps --format-version 1 | $(PYTHON) -c '$(LAMBDA_FUNCTIONS_PY)')" || exit 1; \
	echo "cargo lambda build --locked --release --disable-optimizations --output-format zip $$flag $$sel"; \
	$(CARGO) lambda build --locked --release --disable-optimizations --output-format zip $$flag $$sel || exit 1; \
	prev=; for word in $$sel; do \
	  if [ "$$prev" = --bin ]; then ls -l "$${CARGO_TARGET_DIR:-target}/lambda/$$word/bootstrap.zip" || exit 1; fi; \
	  prev=$$word; \
	done

## cargo-lambda, and zig, which `cargo lambda build` links with: pinned, from PyPI, installed when either is missing.
lambda-tools:
	@if ! $(CARGO) lambda --version >/dev/null 2>&1 \
	    || ! { command -v zig >/dev/null 2>&1 || $(PYTHON) -m ziglang version >/dev/null 2>&1; }; then \
	  echo "make: installing cargo-lambda==$(CARGO_LAMBDA_VERSION) and ziglang==$(ZIGLANG_VERSION) with pip"; \
	  $(PYTHON) -m pip install --quiet "cargo-lambda==$(CARGO_LAMBDA_VERSION)" "ziglang==$(ZIGLANG_VERSION)" || exit 1; \
	  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi; \
	  $(CARGO) lambda --version >/dev/null 2>&1 || { \
	    echo "make: cargo-lambda is installed but 'cargo lambda' does not run: add pip's script directory" \
	      "($$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')) to PATH" >&2; exit 1; }; \
	fi

check:
	$(CARGO) check --locked --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets --no-deps -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf $(HOME_DIR)
