#!/usr/bin/env bash
# `cargo lambda deploy`, as infra/README.md documents it, against the moto server that scripts/with-moto.sh started:
#
#   scripts/with-moto.sh scripts/lambda-deploy-test.sh
#
# 1. the docs: every `cargo lambda build` shown with options keeps --disable-optimizations (the Makefile's
#    LAMBDA_BUILD is the one build command), and infra/README.md lists the environment the template sets;
# 2. builds the workspace's binaries for its tests' feature set (after `cargo test --workspace` only the binaries
#    link: no second compile of the workspace) and checks that every function under functions/ is in the template;
# 3. creates resources with `synctrail setup --prefix ldt-…` and an execution role in moto;
# 4. per function: its debug binary without debug info (`strip --strip-debug`: a zip under Lambda's 50 MB
#    direct-upload limit) packaged by cargo-lambda into target/lambda's layout (`deploy --dry`: the same zipping as
#    `cargo lambda build --output-format zip`), then created with the command infra/function_deploy.py prints;
#    checks runtime, handler, role, memory, timeout, tracing, architecture, exactly the planned environment (commas,
#    `=` and empty values included), log retention and the code;
#    then the README's code-only update of the processor, with another build (`strip --strip-all`), must replace
#    the code and leave every setting as it was;
# 5. architecture: cargo-lambda reads it from the executable, so a minimal arm64 ELF header creates an arm64
#    function, and a code-only deploy of an x86_64 one leaves it arm64 (the warning in infra/README.md).
#
# moto stores functions without running them (that needs Docker): scripts/lambda-invoke-test.sh runs the processor.
# Exits non-zero on the first failure, naming it; deletes what it deployed; the run's small files stay in
# target/lambda-deploy-test/run.* when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

CARGO="${CARGO:-cargo}"
PYTHON="${PYTHON:-python3}"
CARGO_LAMBDA_VERSION="1.9.2"
DEPLOY_SECONDS=120
HELPER="$ROOT/infra/lambda_deploy_check.py"
PLANNER="$ROOT/infra/function_deploy.py"
T0=$SECONDS

say() { echo "lambda-deploy-test: $*" >&2; }
fail() {
    echo "lambda-deploy-test: FAILED: $*" >&2
    exit 1
}
step() {
    local name="$1" started=$SECONDS
    shift
    say "$name"
    "$@" || fail "$name (files in $WORK)"
    say "  ... $((SECONDS - started)) s"
}

ENDPOINT="${SYNCTRAIL_TEST_AWS_ENDPOINT:-}"
case "$ENDPOINT" in
    http://127.0.0.1:* | http://localhost:* | "http://[::1]:"*) ;;
    *) fail "SYNCTRAIL_TEST_AWS_ENDPOINT is '${ENDPOINT}', not a loopback moto server; run: scripts/with-moto.sh $0" ;;
esac
# cargo-lambda's AWS SDK and the CLI go to moto only: its endpoint, dummy credentials, no profile or config file.
export AWS_ENDPOINT_URL="$ENDPOINT" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN
export PYTHONDONTWRITEBYTECODE=1 # the helpers import each other: leave no __pycache__ in infra/

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$TARGET_DIR/lambda-deploy-test"
WORK="$(mktemp -d "$TARGET_DIR/lambda-deploy-test/run.XXXXXX")"
PREFIX="ldt-$(date +%s)-$$"
cleanup() {
    local status=$?
    "$PYTHON" "$HELPER" cleanup --endpoint "$ENDPOINT" --prefix "$PREFIX" >/dev/null 2>&1 || true
    # The binaries and zips are large: keep only the plans, env files and logs of a failed run.
    rm -rf "$WORK/bin" "$WORK/lambda" "$WORK/update" "$WORK/probe"
    if [ "$status" -eq 0 ]; then rm -rf "$WORK"; else say "the run's files are kept in $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the docs ------------------------------------------------------------------------------------------------------
step "the docs show the build command with --disable-optimizations and the functions' environment" \
    "$PYTHON" "$HELPER" check-docs --root "$ROOT"

# ---- tools ---------------------------------------------------------------------------------------------------------
if ! "$CARGO" lambda --version >/dev/null 2>&1; then
    say "installing cargo-lambda==$CARGO_LAMBDA_VERSION with pip (without ziglang: deploy doesn't use zig)"
    "$PYTHON" -m pip install --quiet --no-deps "cargo-lambda==$CARGO_LAMBDA_VERSION" >&2
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    hash -r
    "$CARGO" lambda --version >/dev/null 2>&1 ||
        fail "cargo-lambda is installed but 'cargo lambda' does not run: add pip's script directory" \
            "($("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')) to PATH"
fi
version="$("$CARGO" lambda --version)"
case "$version" in
    "cargo-lambda $CARGO_LAMBDA_VERSION "*) say "$version" ;;
    *) say "note: $version is not the pinned $CARGO_LAMBDA_VERSION that infra/README.md describes" ;;
esac
command -v strip >/dev/null 2>&1 || fail "strip (GNU binutils) is missing: install binutils"

# ---- builds --------------------------------------------------------------------------------------------------------
build() {
    # --workspace --all-targets resolves features as `cargo test --workspace` does, so its compiled crates are reused.
    "$CARGO" build --locked --workspace --all-targets --message-format json-render-diagnostics >"$WORK/build.json" ||
        return 1
    "$PYTHON" - "$WORK/build.json" "$ROOT" >"$WORK/binaries.txt" <<'PY'
import json, os, sys
root = os.path.realpath(sys.argv[2])
for line in open(sys.argv[1]):
    m = json.loads(line)
    if (m.get("reason") != "compiler-artifact" or not m.get("executable") or "bin" not in m["target"]["kind"]
            or m["profile"]["test"]):
        continue
    where = os.path.relpath(os.path.dirname(os.path.realpath(m["manifest_path"])), root).split(os.sep)[0]
    print(where, m["target"]["name"], m["executable"])
PY
}
step "cargo build --workspace --all-targets (the test build's binaries)" build
CLI="$(awk '$1 == "cli" && $2 == "synctrail" { print $3 }' "$WORK/binaries.txt")"
[ -x "$CLI" ] || fail "the build named no synctrail executable (see $WORK/binaries.txt)"
mapfile -t FUNCTIONS < <(awk '$1 == "functions" { print $2 }' "$WORK/binaries.txt" | sort)
[ "${#FUNCTIONS[@]}" -gt 0 ] || fail "the build named no function binary under functions/"
mapfile -t IN_TEMPLATE < <(grep -o 'CodeUri: \.\./target/lambda/[a-z0-9_-]*/bootstrap\.zip' infra/template.yaml |
    cut -d/ -f4 | sort)
[ "${FUNCTIONS[*]}" = "${IN_TEMPLATE[*]}" ] ||
    fail "the functions under functions/ (${FUNCTIONS[*]}) are not the template's (${IN_TEMPLATE[*]})"
binary_of() { awk -v bin="$1" '$1 == "functions" && $2 == bin { print $3 }' "$WORK/binaries.txt"; }

# ---- resources in moto ---------------------------------------------------------------------------------------------
step "synctrail setup --prefix $PREFIX (the table, bucket and queues the environment names)" \
    sh -c '"$1" --backend aws --json setup --prefix "$2" >"$3"' - "$CLI" "$PREFIX" "$WORK/setup.json"
ROLE="$("$PYTHON" "$HELPER" role --endpoint "$ENDPOINT" --name "$PREFIX-functions")" ||
    fail "creating the execution role $PREFIX-functions in moto"

# Packages BINARY as target/lambda's layout DIR/NAME/bootstrap.zip (what `make build` leaves: the zip only).
package() { # package BINARY DIR NAME
    mkdir -p "$2/$3"
    ln -f "$1" "$2/$3/bootstrap"
    timeout "$DEPLOY_SECONDS" "$CARGO" lambda deploy --dry --lambda-dir "$2" --binary-name "$3" \
        --output-format json "$3" >"$2/$3.dry.json" || return 1
    rm "$2/$3/bootstrap"
    [ -f "$2/$3/bootstrap.zip" ] || { say "cargo lambda deploy --dry wrote no $2/$3/bootstrap.zip"; return 1; }
}
deploy() { # deploy LOG ARGS...: cargo lambda deploy in the workspace, bounded in time
    local log="$1"
    shift
    timeout "$DEPLOY_SECONDS" "$CARGO" lambda deploy --output-format json "$@" >"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; return 1; }
}

# The planned environment carries values env files get wrong unless quoted: commas, `=` (and, from the template's
# defaults, empty values).
PARAMS=(--param "InOrderTypes=inventory_adjustment,stock_level" --param "Dependencies=inventory_level.product_id=product"
    --param "LogLevel=info,synctrail=debug")

# ---- every function: created as the template configures it --------------------------------------------------------
mkdir -p "$WORK/bin"
declare -A NAME_OF
for bin in "${FUNCTIONS[@]}"; do
    started=$SECONDS
    built="$(binary_of "$bin")"
    [ -x "$built" ] || fail "$bin: no executable from the build"
    strip --strip-debug -o "$WORK/bin/$bin" "$built" || fail "$bin: strip --strip-debug $built"
    package "$WORK/bin/$bin" "$WORK/lambda" "$bin" || fail "$bin: packaging with cargo lambda deploy --dry"
    "$PYTHON" "$PLANNER" "$bin" --prefix "$PREFIX" --setup "$WORK/setup.json" --role "$ROLE" \
        --env-file "$WORK/$bin.env" "${PARAMS[@]}" --json >"$WORK/$bin.plan.json" ||
        fail "$bin: infra/function_deploy.py"
    mapfile -t words < <("$PYTHON" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["command"]))' \
        "$WORK/$bin.plan.json")
    [ "${words[*]:0:3}" = "cargo lambda deploy" ] || fail "$bin: the planned command is not cargo lambda deploy"
    NAME_OF[$bin]="${words[-1]}"
    deploy "$WORK/$bin.create.log" "${words[@]:3}" --lambda-dir "$WORK/lambda" ||
        fail "$bin: ${words[*]} --lambda-dir $WORK/lambda"
    "$PYTHON" "$HELPER" verify --endpoint "$ENDPOINT" --plan "$WORK/$bin.plan.json" \
        --zip "$WORK/lambda/$bin/bootstrap.zip" --binary "$WORK/bin/$bin" --arch x86_64 >"$WORK/$bin.verify" ||
        fail "$bin: the function cargo lambda deploy created is not as planned"
    say "ok $(cat "$WORK/$bin.verify") ($((SECONDS - started)) s)"
    rm -f "$WORK/bin/$bin" "$WORK/lambda/$bin/bootstrap.zip"
done

# ---- the README's code-only update (processor), with another build of the same code ---------------------------------
started=$SECONDS
bin=processor
name="${NAME_OF[$bin]:-}"
[ -n "$name" ] || fail "no $bin among the functions (${FUNCTIONS[*]}): infra/README.md's example needs updating"
"$PYTHON" "$HELPER" snapshot --endpoint "$ENDPOINT" --function "$name" --out "$WORK/$bin.before.json" ||
    fail "$bin: reading $name's configuration"
strip --strip-all -o "$WORK/bin/$bin.update" "$(binary_of "$bin")" || fail "$bin: strip --strip-all"
package "$WORK/bin/$bin.update" "$WORK/update" "$bin" || fail "$bin: packaging the update"
deploy "$WORK/$bin.update.log" --lambda-dir "$WORK/update" --binary-name "$bin" "$name" ||
    fail "$bin: cargo lambda deploy --binary-name $bin $name (code-only)"
"$PYTHON" "$HELPER" verify-update --endpoint "$ENDPOINT" --before "$WORK/$bin.before.json" \
    --zip "$WORK/update/$bin/bootstrap.zip" >"$WORK/$bin.verify-update" ||
    fail "$bin: the code-only deploy did not leave $name's configuration as it was"
say "ok $(cat "$WORK/$bin.verify-update") ($((SECONDS - started)) s)"

# ---- architecture --------------------------------------------------------------------------------------------------
probe="$PREFIX-arch-probe"
"$PYTHON" "$HELPER" elf --machine arm64 --out "$WORK/arm64.elf" && "$PYTHON" "$HELPER" elf --machine x86_64 \
    --out "$WORK/x86_64.elf" || fail "writing the ELF headers"
package "$WORK/arm64.elf" "$WORK/probe/arm64" probe && package "$WORK/x86_64.elf" "$WORK/probe/x86_64" probe ||
    fail "packaging the ELF headers"
deploy "$WORK/probe.create.log" --lambda-dir "$WORK/probe/arm64" --binary-name probe --iam-role "$ROLE" "$probe" ||
    fail "cargo lambda deploy of an arm64 executable"
"$PYTHON" "$HELPER" snapshot --endpoint "$ENDPOINT" --function "$probe" --out "$WORK/probe.before.json" ||
    fail "reading $probe's configuration"
"$PYTHON" -c 'import json, sys; a = json.load(open(sys.argv[1]))["Architectures"]; sys.exit(a != ["arm64"] and f"{a}")' \
    "$WORK/probe.before.json" || fail "cargo lambda deploy of an arm64 executable did not create an arm64 function"
deploy "$WORK/probe.update.log" --lambda-dir "$WORK/probe/x86_64" --binary-name probe "$probe" ||
    fail "cargo lambda deploy (code-only) of an x86_64 executable onto $probe"
"$PYTHON" "$HELPER" verify-update --endpoint "$ENDPOINT" --before "$WORK/probe.before.json" \
    --zip "$WORK/probe/x86_64/probe/bootstrap.zip" >"$WORK/probe.verify-update" ||
    fail "a code-only deploy changed the function's architecture: infra/README.md's warning is out of date"
say "ok the architecture is the executable's on create (arm64) and kept on a code-only deploy ($(cat "$WORK/probe.verify-update"))"

say "all ${#FUNCTIONS[@]} functions created with cargo lambda deploy as the template configures them, the processor" \
    "updated code-only, the architecture followed: $((SECONDS - T0)) s"
