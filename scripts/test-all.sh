#!/usr/bin/env bash
# Everything `make test` runs, inside the moto server that scripts/with-moto.sh started:
#   0. the lints: `cargo fmt --check` and clippy with warnings denied (as `make lint`);
#   1. the Rust tests (unit, conformance on both backends, rules, bad input, AWS pipeline, simulation);
#   2. further suites that drive built binaries or tools (listed below), each a script that exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO="${CARGO:-cargo}"

"$CARGO" fmt --all -- --check
"$CARGO" clippy --locked --workspace --all-targets --no-deps -- -D warnings
# The library alone, no backend compiled in: what a team bringing its own adapters builds.
"$CARGO" clippy --locked -p synctrail --no-default-features --no-deps -- -D warnings
"$CARGO" test --locked --workspace
CARGO="$CARGO" scripts/lambda-invoke-test.sh   # the processor under `cargo lambda watch`, every events/*.json invoked
CARGO="$CARGO" scripts/lambda-deploy-test.sh   # `cargo lambda deploy` of every function to moto, as infra/README.md says
CARGO="$CARGO" scripts/infra-test.sh          # infra/template.yaml: cfn-lint, checkov, the stack in moto, the demo on it
