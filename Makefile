# synctrail — every set-up step lives here, so a fresh machine needs only `make demo` and `make test`.
CARGO ?= cargo
HOME_DIR ?= .synctrail

.PHONY: demo test bench bench-instructions bench-lambda build check lint fmt clean

## The whole pipeline on the embedded backend: 20,000 messy events, faults injected, convergence checked.
demo:
	$(CARGO) run --locked --release -p synctrail-cli -- --home $(HOME_DIR) demo

## Every test: unit tests, the conformance suite on both backends (AWS through a private moto server that
## scripts/with-moto.sh installs, starts on a free loopback port and stops), the protocol rules, bad input, the
## AWS pipeline and the seeded simulation.
test:
	CARGO=$(CARGO) scripts/with-moto.sh scripts/test-all.sh

## The benchmark on the embedded backend: events/s, latency percentiles, CPU time, bytes written per event, the WAL's
## peak and the ratio to a baseline SQLite loop measured in the same run — with the reference mirror; then the webhook
## leg, rounds of a growing store each against the loop, and the destination alone, mirror and HTTP to the example
## receiver (scripts/bench.sh).
bench:
	CARGO=$(CARGO) HOME_DIR=$(HOME_DIR) scripts/bench.sh

## The embedded pipeline's instructions per event under valgrind's callgrind: unlike CPU time, the same within 0.1 %
## from run to run, to see changes of 1 % (scripts/bench-instructions.sh; needs valgrind).
bench-instructions:
	CARGO=$(CARGO) scripts/bench-instructions.sh

## The deployable processor as Lambda runs it: `make build`, then its bootstrap under a stand-in Runtime API on the
## AWS backend of a private moto server: zip sizes, cold start, init CPU, CPU per event, peak memory
## (scripts/bench-lambda.sh). `DESTINATION=http make bench-lambda`: an HTTP destination (the example receiver)
## instead of the reference mirror in DynamoDB.
bench-lambda:
	CARGO=$(CARGO) HOME_DIR=$(HOME_DIR) scripts/with-moto.sh scripts/bench-lambda.sh

## Deployable Lambda zips: every binary of every function crate under functions/ (found with `cargo metadata`, so a
## new function is picked up), built with LAMBDA_BUILD below into target/lambda/<bin>/bootstrap.zip. LAMBDA_BUILD is
## the one build command: the docs point here (scripts/lambda-deploy-test.sh fails on a doc that shows
## `cargo lambda build` with options but without --disable-optimizations).
##   make build              x86_64: the fallback, builds on any machine of ours
##   make build ARCH=arm64   what deploy uses (the SAM template runs the functions on arm64); needs the rustup target
##                           aarch64-unknown-linux-gnu, which cannot be counted on everywhere
## The build uses the workspace's `release-lambda` profile (Cargo.toml: release, optimised for size, whole-program
## LTO, one codegen unit, symbols stripped; panics still unwind) — zips under 5 MB (README, "On Lambda") instead of
## 7.6-9.4 MB, and less code to map at a cold start. cargo-lambda's own release optimizations are off
## (--disable-optimizations): they set panic = "abort", and the processor catches a record's panic to fail only that
## record. Functions are built without the embedded backend (rusqlite is not linked); `make build
## LAMBDA_FEATURES=embedded` adds it.
## CI does not run this target: it builds release only once.
PYTHON ?= python3
ARCH ?= x86_64
CARGO_LAMBDA_VERSION := 1.9.2
ZIGLANG_VERSION := 0.17.1
LAMBDA_FEATURES ?=
LAMBDA_BUILD := $(CARGO) lambda build --locked --profile release-lambda --disable-optimizations --output-format zip \
  $(if $(LAMBDA_FEATURES),--features $(LAMBDA_FEATURES))
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
	echo "$(LAMBDA_BUILD) $$flag $$sel"; \
	$(LAMBDA_BUILD) $$flag $$sel || exit 1; \
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

## Deploy to AWS with the SAM CLI (documented, not run in CI): the arm64 zips (`make build ARCH=arm64`), then
## `sam deploy` of infra/template.yaml. Parameters: see infra/README.md, e.g.
##   make deploy STACK_NAME=synctrail NAME_PREFIX=synctrail SAM_PARAMS="MaximumConcurrency=20 AlarmTopicArn=arn:…"
## A code-only update of one function: `cargo lambda deploy` (infra/README.md).
STACK_NAME ?= synctrail
NAME_PREFIX ?= synctrail
SAM_PARAMS ?=
.PHONY: deploy infra-check
deploy:
	@command -v sam >/dev/null 2>&1 || { echo "make deploy: the AWS SAM CLI (sam) is not installed; see" \
	  "https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/install-sam-cli.html" >&2; exit 1; }
	$(MAKE) build ARCH=arm64
	sam deploy --template-file infra/template.yaml --stack-name $(STACK_NAME) --resolve-s3 \
	  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
	  --parameter-overrides NamePrefix=$(NAME_PREFIX) $(SAM_PARAMS)

## The template's checks (also part of `make test`): cfn-lint, checkov, the stack created in moto and compared with
## what the code creates, and the demo converging on it.
infra-check:
	CARGO=$(CARGO) scripts/with-moto.sh scripts/infra-test.sh

check:
	$(CARGO) check --locked --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets --no-deps -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf $(HOME_DIR)
