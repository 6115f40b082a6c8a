#!/usr/bin/env bash
# The deployment template's tests, inside scripts/with-moto.sh (which exports SYNCTRAIL_TEST_AWS_ENDPOINT, dummy
# credentials and the region):
#
#   scripts/with-moto.sh scripts/infra-test.sh
#
#  1. cfn-lint and checkov on infra/template.yaml (any finding fails; a checkov skip needs a written reason); the
#     template's Rules evaluated offline against what the functions' cold starts refuse; its alarms' metrics
#     against what the functions emit;
#  2. the SAM transform expanded offline (aws-sam-translator), placeholder code zips put in moto's S3, the stack
#     created in moto, and what moto's CloudFormation ignores applied through the API (TTL, point-in-time recovery,
#     the bucket's lifecycle and public access block);
#  3. the stack checked against the template's promises (names, functions, event source mapping, schedule, queue
#     timing), and its table, bucket and queues compared with what `synctrail setup` creates: the template and the
#     code must agree;
#  4. the demo workload run by the local runtime (the processor's handler) on the stack's own table, bucket and
#     queues, which must converge and leave their settings unchanged; then a few envelopes sent and processed with
#     the names read from the stack outputs, each of which must end completed.
#
# The tools come pinned from PyPI into a virtualenv under the cargo target directory (target/infra-venv, reused).
# INFRA_TEST_EVENTS / INFRA_TEST_ENTITIES / INFRA_TEST_WORKERS size the demo (default 200 events over 80 entities,
# 2 workers: behind --serialize-dynamodb more workers only wait longer for their turn, and on a loaded machine a
# message that waits past its visibility timeout costs a receive, so 4 workers on 40 entities sometimes let SQS
# dead-letter messages the engine never saw). Exits non-zero on the first failure, naming it; the run's files stay
# in target/infra-test/run.* when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

CARGO="${CARGO:-cargo}"
PYTHON="${PYTHON:-python3}"
EVENTS="${INFRA_TEST_EVENTS:-200}"
ENTITIES="${INFRA_TEST_ENTITIES:-80}"
WORKERS="${INFRA_TEST_WORKERS:-2}"
PINS="cfn-lint==1.58.0 checkov==3.3.30 aws-sam-translator==1.115.0"
TEMPLATE="infra/template.yaml"
HELPER="$ROOT/infra/moto_stack.py"

fail() {
    echo "infra-test: FAIL: $*" >&2
    exit 1
}

ENDPOINT="${SYNCTRAIL_TEST_AWS_ENDPOINT:-}"
[ -n "$ENDPOINT" ] || fail "SYNCTRAIL_TEST_AWS_ENDPOINT is not set; run me as: scripts/with-moto.sh $0"
case "$ENDPOINT" in
    http://127.0.0.1:* | http://localhost:*) ;;
    *) fail "SYNCTRAIL_TEST_AWS_ENDPOINT=$ENDPOINT is not a loopback endpoint; refusing to create resources there" ;;
esac
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
# The CLI's SDK must not look for credentials or endpoints anywhere else.
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_ENDPOINT_URL

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$TARGET_DIR/infra-venv"
mkdir -p "$TARGET_DIR/infra-test"
WORK="$(mktemp -d "$TARGET_DIR/infra-test/run.XXXXXX")"
SUFFIX="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(3))')"
PREFIX="st-infra-$SUFFIX"
STACK="synctrail-infra-$SUFFIX"
T0=$SECONDS

step() {
    local name="$1"
    shift
    local started=$SECONDS
    echo "infra-test: $name" >&2
    "$@" || fail "$name (files in $WORK)"
    echo "infra-test:   ... $((SECONDS - started)) s" >&2
}

# ---------------------------------------------------------------------------------------------------- tools
install_tools() {
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.pins" 2>/dev/null)" = "$PINS" ]; then
        echo "infra-test:   reusing $VENV ($PINS)" >&2
        return 0
    fi
    "$PYTHON" -m venv --clear "$VENV" || return 1
    # shellcheck disable=SC2086 # PINS is a list of requirement specifiers
    timeout 900 "$VENV/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check $PINS ||
        { echo "infra-test: pip could not install $PINS from PyPI" >&2; return 1; }
    echo "$PINS" >"$VENV/.pins"
}
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TARGET_DIR/infra-venv.lock"
    timeout 1000 flock 9 || fail "another infra-test holds $TARGET_DIR/infra-venv.lock"
fi
step "tools: $PINS in $VENV" install_tools
if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
VPY="$VENV/bin/python"

# ---------------------------------------------------------------------------------------------------- static
step "cfn-lint $TEMPLATE" "$VENV/bin/cfn-lint" "$TEMPLATE"
run_checkov() {
    # --skip-download: offline, no platform lookups. Exits 1 when a check fails.
    "$VENV/bin/checkov" --framework cloudformation --file "$TEMPLATE" --compact --quiet --skip-download \
        >"$WORK/checkov.txt" 2>&1
    local status=$?
    grep -E "Passed checks|Check: |FAILED" "$WORK/checkov.txt" >&2 || true
    [ "$status" -eq 0 ] || { tail -n 40 "$WORK/checkov.txt" >&2; return 1; }
}
step "checkov $TEMPLATE" run_checkov
step "checkov skips carry their reasons" "$VPY" "$HELPER" check-skips "$TEMPLATE"
step "the Rules refuse exactly what a cold start refuses" "$VPY" "$HELPER" check-rules "$TEMPLATE"
step "the alarms watch metrics the functions emit" "$VPY" "$HELPER" check-alarms "$TEMPLATE" --repo "$ROOT"

# ---------------------------------------------------------------------------------------------------- the stack
step "expand the SAM transform offline" \
    "$VPY" "$HELPER" translate "$TEMPLATE" "$WORK/template.json" --code-bucket "$PREFIX-code"

# MaxReceiveCount 10 is the template's default and the demo's drill setting (cli/src/config.rs
# DRILL_MAX_RECEIVES); the payload bucket is named <prefix>-payloads because that is where `synctrail demo
# --prefix` looks. IngestEnabled=false: moto "invokes" an enabled mapping's function on every send (it would fail
# here, without Docker, and eat receives); the local runtime plays the event source instead.
step "create stack $STACK in moto ($ENDPOINT)" \
    "$VPY" "$HELPER" deploy --endpoint "$ENDPOINT" --template "$WORK/template.json" --stack "$STACK" \
    --code-bucket "$PREFIX-code" --outputs "$WORK/outputs.json" --timeout 120 \
    --param "NamePrefix=$PREFIX" --param "PayloadBucketName=$PREFIX-payloads" --param "MaxReceiveCount=10" \
    --param "IngestEnabled=false"
step "apply what moto's CloudFormation ignores" \
    "$VPY" "$HELPER" apply-ignored --endpoint "$ENDPOINT" --template "$WORK/template.json" --stack "$STACK"
step "check the stack against the template's promises" \
    "$VPY" "$HELPER" verify --endpoint "$ENDPOINT" --template "$WORK/template.json" --stack "$STACK" \
    --outputs "$WORK/outputs.json" --repo "$ROOT"

output() { "$VPY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["outputs"][sys.argv[2]])' \
    "$WORK/outputs.json" "$1"; }
TABLE="$(output TableName)"
BUCKET="$(output BucketName)"
QUEUE="$(output QueueUrl)"
DLQ="$(output DlqUrl)"
echo "infra-test:   stack outputs: table $TABLE, bucket $BUCKET, queue $QUEUE, dlq $DLQ" >&2

# ---------------------------------------------------------------------------------------------------- the code
step "build the CLI" "$CARGO" build --locked --quiet -p synctrail-cli
BIN="$TARGET_DIR/debug/synctrail"
[ -x "$BIN" ] || fail "the CLI was built but $BIN is missing"
AWS_ARGS=(--backend aws --endpoint-url "$ENDPOINT")

reference_setup() {
    "$BIN" "${AWS_ARGS[@]}" setup --prefix "$PREFIX-ref" --max-receives 10 >"$WORK/setup.txt" 2>&1 ||
        { cat "$WORK/setup.txt" >&2; return 1; }
}
step "synctrail setup --prefix $PREFIX-ref (what the code creates)" reference_setup
describe() {
    "$VPY" "$HELPER" describe --endpoint "$ENDPOINT" --table "$1" --bucket "$2" --queue-url "$3" --dlq-url "$4" \
        --out "$5"
}
step "describe the stack's resources" describe "$TABLE" "$BUCKET" "$QUEUE" "$DLQ" "$WORK/stack.json"
step "describe the code's resources" describe "$PREFIX-ref-events" "$PREFIX-ref-payloads" \
    "$PREFIX-ref-ingest" "$PREFIX-ref-ingest-dlq" "$WORK/reference.json"
step "the template and the code agree (table, indexes, TTL, lifecycle, public access, queues, redrive)" \
    "$VPY" "$HELPER" diff "$WORK/stack.json" "$WORK/reference.json" --what "stack vs synctrail setup"
step "list the resources before the demo" "$VPY" "$HELPER" resources --endpoint "$ENDPOINT" --out "$WORK/before.json"

run_demo() {
    # The demo finds the stack's resources by their prefix (create_all keeps what exists); --serialize-dynamodb:
    # moto loses data under concurrent TransactWriteItems.
    timeout 1200 "$BIN" "${AWS_ARGS[@]}" --serialize-dynamodb --json demo --prefix "$PREFIX" \
        --events "$EVENTS" --entities "$ENTITIES" --workers "$WORKERS" >"$WORK/demo.json" 2>"$WORK/demo.log"
    local status=$?
    if [ "$status" -ne 0 ]; then
        echo "infra-test:   synctrail demo exited $status; the end of its log ($WORK/demo.log):" >&2
        tail -n 20 "$WORK/demo.log" >&2
    fi
    "$VPY" "$HELPER" check-demo "$WORK/demo.json" --outputs "$WORK/outputs.json" || return 1
    return "$status"
}
step "synctrail demo ($EVENTS events, $ENTITIES entities, $WORKERS workers, faults on) on the stack's resources" run_demo
step "describe the stack's resources after the demo" describe "$TABLE" "$BUCKET" "$QUEUE" "$DLQ" "$WORK/after.json"
step "the demo changed none of the stack's settings" \
    "$VPY" "$HELPER" diff "$WORK/stack.json" "$WORK/after.json" --what "stack before vs after the demo"
step "list the resources after the demo" "$VPY" "$HELPER" resources --endpoint "$ENDPOINT" --out "$WORK/after-resources.json"
step "the demo created no resources of its own" \
    "$VPY" "$HELPER" diff "$WORK/before.json" "$WORK/after-resources.json" --what "resources before vs after the demo"

# A few envelopes through the names the stack outputs, as a deployed function gets them in its environment.
STACK_ARGS=("${AWS_ARGS[@]}" --table "$TABLE" --bucket "$BUCKET" --queue "$QUEUE" --dlq "$DLQ")
IDS=()
for n in 1 2 3 4 5; do IDS+=("infra-$SUFFIX-$n"); done
send_and_run() {
    local n=0
    for id in "${IDS[@]}"; do
        n=$((n + 1))
        printf '{"source":"infra-test","entity_type":"check","external_id":"%s","updated_at":"2026-05-01T12:00:0%sZ","event_id":"%s","kind":"upsert","payload":{"n":%s}}\n' \
            "item-$n" "$n" "$id" "$n"
    done >"$WORK/envelopes.ndjson"
    "$BIN" "${STACK_ARGS[@]}" send "$WORK/envelopes.ndjson" >"$WORK/send.txt" 2>&1 || { cat "$WORK/send.txt" >&2; return 1; }
    timeout 300 "$BIN" "${STACK_ARGS[@]}" --serialize-dynamodb run --workers 2 --max-duration 240 \
        >"$WORK/run.txt" 2>&1 || { tail -n 20 "$WORK/run.txt" >&2; return 1; }
    for id in "${IDS[@]}"; do
        "$BIN" "${STACK_ARGS[@]}" status "$id" >"$WORK/status-$id.txt" 2>&1 ||
            { echo "infra-test:   event $id did not end completed:" >&2; cat "$WORK/status-$id.txt" >&2; return 1; }
    done
}
step "send, run and check ${#IDS[@]} events with the names from the stack outputs" send_and_run

rm -rf "$WORK"
echo "infra-test: OK in $((SECONDS - T0)) s: template linted and scanned, stack $STACK created in moto, the" \
    "template agrees with the code, the demo converged on the stack's resources" >&2
