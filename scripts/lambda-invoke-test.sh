#!/usr/bin/env bash
# The processor Lambda under `cargo lambda watch` (the Lambda runtime emulator), on the AWS backend of the moto
# server that scripts/with-moto.sh started:
#
#   scripts/with-moto.sh scripts/lambda-invoke-test.sh
#
# 1. installs cargo-lambda from PyPI (pinned, without zig: `watch` builds with plain cargo) when it is missing;
# 2. creates fresh resources in moto with `synctrail --backend aws setup --prefix lit-…`;
# 3. starts `cargo lambda watch --ignore-changes` on a free loopback port, with the processor's environment
#    (SYNCTRAIL_TABLE, _BUCKET, _QUEUE_URL, _DLQ_URL, AWS_ENDPOINT_URL, SYNCTRAIL_IN_ORDER_TYPES), and waits (at most
#    LAMBDA_START_SECONDS, default 600: the first start may compile) until the function answers an empty batch;
# 4. sends every events/*.json with `cargo lambda invoke --data-file` and checks the partial batch response
#    (`batchItemFailures`), each record's event as `synctrail status` / `show` / `list` read it back (status,
#    pointer, rejection reason, flags), and the mirror (`synctrail records`);
# 5. sends every sample a second time (SQS delivers at least once): nothing is retried, no new event, every event
#    keeps its status and counts one redelivery.
#
# The expectations per sample are in EXPECT below (a new sample needs an entry there). Exits non-zero, saying which
# sample and which check, on the first failure; always stops the emulator (and the function under it).
# WATCH_LOG (default: a temporary file) receives the emulator's and the function's output.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO="${CARGO:-cargo}"
PYTHON="${PYTHON:-python3}"
CARGO_LAMBDA_VERSION="1.9.2"
START_SECONDS="${LAMBDA_START_SECONDS:-600}"
INVOKE_SECONDS=120
FUNCTION=processor
PACKAGE=synctrail-processor

say() { echo "lambda-invoke-test: $*" >&2; }
fail() {
    echo "lambda-invoke-test: FAILED: $*" >&2
    exit 1
}

ENDPOINT="${SYNCTRAIL_TEST_AWS_ENDPOINT:-}"
case "$ENDPOINT" in
    http://127.0.0.1:* | http://localhost:* | "http://[::1]:"*) ;;
    *) fail "SYNCTRAIL_TEST_AWS_ENDPOINT is '${ENDPOINT}', not a loopback moto server; run: scripts/with-moto.sh $0" ;;
esac

# ---- cargo-lambda --------------------------------------------------------------------------------------------------
if ! "$CARGO" lambda --version >/dev/null 2>&1; then
    say "installing cargo-lambda==$CARGO_LAMBDA_VERSION with pip (without ziglang: watch and invoke don't use zig)"
    "$PYTHON" -m pip install --quiet --no-deps "cargo-lambda==$CARGO_LAMBDA_VERSION" >&2
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    hash -r
    "$CARGO" lambda --version >/dev/null 2>&1 ||
        fail "cargo-lambda is installed but 'cargo lambda' does not run: add pip's script directory" \
            "($("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')) to PATH"
fi
say "$("$CARGO" lambda --version)"

WORK="$(mktemp -d -t lambda-invoke-test.XXXXXX)"
WATCH_LOG="${WATCH_LOG:-$WORK/watch.log}"
WATCH_PID=""

stop_watch() {
    if [ -n "$WATCH_PID" ] && kill -0 "$WATCH_PID" 2>/dev/null; then
        # The emulator leads its own process group (setsid): cargo run and the function are in it too.
        kill -TERM -- "-$WATCH_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$WATCH_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL -- "-$WATCH_PID" 2>/dev/null || true
        wait "$WATCH_PID" 2>/dev/null || true
    fi
    WATCH_PID=""
}
cleanup() {
    local status=$?
    stop_watch
    if [ "$status" -ne 0 ] && [ -s "$WATCH_LOG" ]; then
        echo "lambda-invoke-test: the last lines of the emulator's log ($WATCH_LOG):" >&2
        # (without the emulator's one-line dump of its configuration at shutdown; long lines cut)
        grep -v '^ *INFO run{config=' "$WATCH_LOG" | tail -n 40 | cut -c 1-400 >&2
    fi
    if [ "$status" -eq 0 ]; then
        rm -rf "$WORK"
    else
        echo "lambda-invoke-test: responses, listings and the log are kept in $WORK" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- builds --------------------------------------------------------------------------------------------------------
# The CLI is run as a binary (not `cargo run` per call); the processor is built first, exactly as the emulator's
# `cargo run -p synctrail-processor --bin processor` builds it, so that its start needs no compiling.
say "building the CLI and the processor"
CLI="$("$CARGO" build --locked -p synctrail-cli --bin synctrail --message-format json-render-diagnostics |
    "$PYTHON" -c '
import json, sys
paths = [m["executable"] for m in map(json.loads, sys.stdin)
         if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "synctrail"]
print(paths[-1] if paths else "")
')" || fail "building the CLI (cargo build -p synctrail-cli)"
[ -x "$CLI" ] || fail "cargo build -p synctrail-cli named no synctrail executable"
"$CARGO" build --locked -p "$PACKAGE" --bin "$FUNCTION" || fail "building the processor (cargo build -p $PACKAGE)"

# ---- fresh resources in moto ---------------------------------------------------------------------------------------
export AWS_ENDPOINT_URL="$ENDPOINT"
PREFIX="lit-$(date +%s)-$$"
say "creating table, bucket and queues $PREFIX-* at $ENDPOINT"
"$CLI" --backend aws --json setup --prefix "$PREFIX" >"$WORK/setup.json" ||
    fail "synctrail --backend aws setup --prefix $PREFIX"
eval "$("$PYTHON" - "$WORK/setup.json" <<'PY'
import json, shlex, sys
r = json.load(open(sys.argv[1]))
for var, key in (("SYNCTRAIL_TABLE", "table"), ("SYNCTRAIL_BUCKET", "bucket"),
                 ("SYNCTRAIL_QUEUE_URL", "queue_url"), ("SYNCTRAIL_DLQ_URL", "dlq_url")):
    if not r.get(key):
        sys.exit(f"setup --json printed no {key}: {r}")
    print(f"export {var}={shlex.quote(r[key])}")
PY
)"
# The processor's engine settings: stock adjustments are deltas (in_order), as in the Rust tests (the template takes
# this as its InOrderTypes parameter).
export SYNCTRAIL_IN_ORDER_TYPES="${SYNCTRAIL_IN_ORDER_TYPES:-inventory_adjustment}"
export RUST_LOG="${RUST_LOG:-info}"

# ---- the emulator --------------------------------------------------------------------------------------------------
PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
say "starting cargo lambda watch on 127.0.0.1:$PORT (log: $WATCH_LOG)"
setsid "$CARGO" lambda watch --ignore-changes --invoke-address 127.0.0.1 --invoke-port "$PORT" \
    --locked --package "$PACKAGE" </dev/null >"$WATCH_LOG" 2>&1 &
WATCH_PID=$!

invoke() { # invoke SECONDS OUTPUT_FILE (--data-file FILE | --data-ascii TEXT)
    local seconds="$1" output="$2"
    shift 2
    timeout "$seconds" "$CARGO" lambda invoke --invoke-address 127.0.0.1 --invoke-port "$PORT" \
        --output-format json "$@" "$FUNCTION" >"$output" 2>"$output.err"
}

# Wait until the emulator listens, then until the function answers an empty batch (its first start runs
# `cargo run`, which may compile); bounded by START_SECONDS in all.
started=$(date +%s)
deadline=$((started + START_SECONDS))
listening=0
for _ in $(seq 1 "$START_SECONDS"); do
    kill -0 "$WATCH_PID" 2>/dev/null || fail "cargo lambda watch exited before listening on 127.0.0.1:$PORT"
    if "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), timeout=1).close()" 2>/dev/null; then
        listening=1
        break
    fi
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 1
done
[ "$listening" -eq 1 ] || fail "cargo lambda watch did not listen on 127.0.0.1:$PORT within ${START_SECONDS} s"

answered=0
for try in $(seq 1 $(((START_SECONDS + 9) / 10))); do
    kill -0 "$WATCH_PID" 2>/dev/null || fail "cargo lambda watch exited while the function was starting"
    if grep -q 'command exited\|command killed\|error: could not compile' "$WATCH_LOG"; then
        fail "the function did not start under cargo lambda watch (see its log below)"
    fi
    left=$((deadline - $(date +%s)))
    [ "$left" -gt 0 ] || break
    if invoke "$((left < 10 ? left : 10))" "$WORK/warmup.json" --data-ascii '{"Records":[]}' &&
        "$PYTHON" -c 'import json, sys; r = json.load(open(sys.argv[1])); sys.exit(r.get("batchItemFailures") != [])' \
            "$WORK/warmup.json" 2>/dev/null; then
        answered=1
        break
    fi
    if [ $((try % 6)) -eq 0 ]; then say "the function has not answered yet ($(($(date +%s) - started)) s)"; fi
done
[ "$answered" -eq 1 ] || fail "the function did not answer an empty batch within ${START_SECONDS} s" \
    "($(cat "$WORK/warmup.json.err" 2>/dev/null | tail -n 3))"
say "the function answers ($(($(date +%s) - started)) s after the emulator started)"

# ---- the checks ----------------------------------------------------------------------------------------------------
cat >"$WORK/check.py" <<'PY'
"""Checks one invocation of a sample: check.py first|second SAMPLE RESPONSE EVENTS_BEFORE EVENTS_AFTER STATE."""
import hashlib, json, os, subprocess, sys

CLI = os.environ["LIT_CLI"]
mode, sample_path, response_path, before_path, after_path, state_path = sys.argv[1:]
sample = os.path.basename(sample_path)

# What each sample must produce, record by record (in the sample's order):
#   status, and optionally: dropped_for (index of the record it points at), field + reason (a rejection),
#   out_of_order (the flag). "failures": the messageIds the response must return for retry.
#   "mirror": entity key -> what its mirror record must hold ("state" keys, or "deleted").
COMPLETED = {"status": "completed"}
EXPECT = {
    "sqs-envelopes.json": {
        "failures": [],
        "records": [COMPLETED] * 5,
        "mirror": {
            "default/github/issue/octo-org/widgets#1347": {"state": {"state": "closed"}},
            "default/shopify/product/632910392": {"state": {"title": "IPod Nano - 8GB"}},
            "default/shopify/product/921728736": {"state": {"status": "draft"}},
            "default/shopify/product/440089423": {"deleted": True},
        },
    },
    "sqs-inventory-deltas.json": {
        "failures": [],
        "records": [
            {"status": "completed", "out_of_order": False},
            {"status": "completed", "out_of_order": False},
            {"status": "completed", "out_of_order": True},  # 12:00:02 arrives after 12:00:05
            {"status": "completed", "out_of_order": False},
        ],
        # The sum of the deltas, and the other fields of the latest event by order key (12:00:09, "damage").
        "mirror": {"default/erp/inventory_adjustment/sku-4411@wh-1": {"state": {"quantity": 13, "reason": "damage"}}},
    },
    "sqs-malformed.json": {
        "failures": [],
        "records": [
            COMPLETED,
            {"status": "rejected", "field": None, "reason": "not JSON"},
            {"status": "rejected", "field": None, "reason": "expected a JSON object"},
            {"status": "rejected", "field": "source", "reason": "is missing"},
            {"status": "rejected", "field": "updated_at", "reason": "a number, expected a string"},
            {"status": "rejected", "field": "updated_at", "reason": "RFC 3339"},
            {"status": "rejected", "field": "event_id", "reason": "is invalid"},
            {"status": "rejected", "field": "external_id", "reason": "appears twice"},
            COMPLETED,
        ],
        "mirror": {
            "default/github/issue/octo-org/widgets#2001": {"state": {"state": "open"}},
            "default/shopify/product/632910400": {"state": {"title": "Valid after the broken ones"}},
        },
    },
    "sqs-out-of-order.json": {
        "failures": [],
        "records": [
            COMPLETED,
            {"status": "dropped", "dropped_for": 0},
            {"status": "dropped", "dropped_for": 0},
        ],
        "mirror": {"default/github/issue/octo-org/widgets#88": {"state": {"title": "Third state"}}},
    },
}


def fail(what):
    sys.exit(f"{sample} ({mode} delivery): {what}")


def cli(*args):
    try:
        p = subprocess.run([CLI, "--backend", "aws", "--json", *args], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        fail(f"synctrail {' '.join(args)} did not finish within 120 s")
    return p


def cli_json(*args):
    p = cli(*args)
    if p.returncode != 0:
        fail(f"synctrail {' '.join(args)} exited {p.returncode}: {p.stderr.strip()[-400:]}")
    return json.loads(p.stdout)


if sample not in EXPECT:
    fail(f"no expectations for this sample: add an entry to EXPECT in {os.environ.get('LIT_SCRIPT', 'the test')}")
expect = EXPECT[sample]
records = json.load(open(sample_path))["Records"]
if len(records) != len(expect["records"]):
    fail(f"the sample has {len(records)} records, EXPECT describes {len(expect['records'])}")

# The partial batch response.
try:
    response = json.load(open(response_path))
except ValueError as e:
    fail(f"the invocation's response is not JSON ({e}): {open(response_path).read()[:400]}")
if not isinstance(response, dict) or not isinstance(response.get("batchItemFailures"), list):
    fail(f"the response is not an SqsBatchResponse: {json.dumps(response)[:400]}")
failures = sorted(f.get("itemIdentifier") for f in response["batchItemFailures"])
if failures != sorted(expect["failures"]):
    fail(f"batchItemFailures is {failures}, expected {sorted(expect['failures'])}")

# Which event each record became: the event whose last_message_id is the record's messageId.
before = {e["event_id"]: e for e in json.load(open(before_path))["events"]}
after = {e["event_id"]: e for e in json.load(open(after_path))["events"]}
new = sorted(set(after) - set(before))
if mode == "first":
    shown = {i: cli_json("show", i) for i in new}
    by_message = {}
    for event_id, record in shown.items():
        by_message.setdefault(record.get("last_message_id"), []).append(event_id)
    ids = []
    for i, r in enumerate(records):
        found = by_message.get(r["messageId"], [])
        if len(found) != 1:
            fail(f"record {i} (messageId {r['messageId']}) became {len(found)} new events ({found}), expected 1")
        ids.append(found[0])
    if len(new) != len(records):
        fail(f"{len(new)} new events for {len(records)} records: {new}")
    state = {"ids": ids}
    json.dump(state, open(state_path, "w"))
else:
    if new:
        fail(f"delivering the sample again created events {new}")
    state = json.load(open(state_path))
    ids = state["ids"]
    shown = {i: cli_json("show", i) for i in ids}

# Each record's event, as status / show / list read it back.
for i, (r, want, event_id) in enumerate(zip(records, expect["records"], ids)):
    where = f"record {i} (event {event_id})"
    p = cli("status", event_id)
    if p.returncode not in (0, 1):
        fail(f"{where}: synctrail status exited {p.returncode}: {p.stderr.strip()[-400:]}")
    report = json.loads(p.stdout)
    if report["status"] != want["status"]:
        fail(f"{where}: status is {report['status']} (error: {report.get('error')}), expected {want['status']}")
    if (p.returncode == 0) != (want["status"] == "completed"):
        fail(f"{where}: synctrail status exited {p.returncode} for a {report['status']} event")
    if not report["terminal"]:
        fail(f"{where}: {report['status']} is not terminal")
    if after[event_id]["status"] != want["status"]:
        fail(f"{where}: synctrail list says {after[event_id]['status']}, expected {want['status']}")
    record = shown[event_id]
    if "dropped_for" in want and report.get("dropped_for") != ids[want["dropped_for"]]:
        fail(f"{where}: dropped_for is {report.get('dropped_for')}, expected {ids[want['dropped_for']]}")
    if "out_of_order" in want and record.get("out_of_order") != want["out_of_order"]:
        fail(f"{where}: out_of_order is {record.get('out_of_order')}, expected {want['out_of_order']}")
    if want["status"] == "rejected":
        body = r["body"].encode()
        expected_id = "r-" + hashlib.sha256(body).hexdigest()[:40]
        if event_id != expected_id:
            fail(f"{where}: a rejected body is recorded as {event_id}, expected {expected_id}")
        error = report.get("error") or {}
        if error.get("field") != want["field"] or want["reason"] not in error.get("message", ""):
            fail(f"{where}: the rejection names field {error.get('field')!r} and says {error.get('message')!r};"
                 f" expected field {want['field']!r} and {want['reason']!r}")
        if record["payload"]["size"] != len(body):
            fail(f"{where}: the archived body is {record['payload']['size']} bytes, the message {len(body)}")
    functions = {h.get("function") for h in record.get("history", [])}
    if not any(f and f.startswith("processor:") for f in functions):
        fail(f"{where}: no history entry written by the processor under the emulator (functions: {functions})")
    redelivered = 0 if mode == "first" else 1
    if record.get("redelivered") != redelivered:
        fail(f"{where}: redelivered is {record.get('redelivered')}, expected {redelivered}")

# The mirror (the reference destination).
for entity, want in expect["mirror"].items():
    listing = cli_json("records", "--entity", entity, "--limit", "0")["records"]
    rows = [m for m in listing if m.get("entity_key") == entity]
    if len(rows) != 1:
        fail(f"the mirror has {len(rows)} records for {entity}, expected 1")
    row = rows[0]
    if want.get("deleted") and not row.get("deleted"):
        fail(f"the mirror record of {entity} is not deleted: {row}")
    for key, value in want.get("state", {}).items():
        if (row.get("state") or {}).get(key) != value:
            fail(f"the mirror record of {entity} has {key} = {(row.get('state') or {}).get(key)!r}, expected {value!r}")

print(f"{sample}: {len(records)} records -> " + ", ".join(sorted(
    f"{s} {sum(1 for w in expect['records'] if w['status'] == s)}" for s in {w['status'] for w in expect['records']})))
PY

export LIT_CLI="$CLI" LIT_SCRIPT="$0"
shopt -s nullglob
samples=(events/*.json)
[ "${#samples[@]}" -gt 0 ] || fail "no samples in events/"

for mode in first second; do
    for sample in "${samples[@]}"; do
        name="$(basename "$sample" .json)"
        "$CLI" --backend aws --json list --limit 0 >"$WORK/$name.before.json" || fail "$sample: synctrail list"
        invoke "$INVOKE_SECONDS" "$WORK/$name.$mode.response.json" --data-file "$sample" ||
            fail "$sample ($mode delivery): cargo lambda invoke failed or took over ${INVOKE_SECONDS} s:" \
                "$(tail -n 5 "$WORK/$name.$mode.response.json.err")"
        "$CLI" --backend aws --json list --limit 0 >"$WORK/$name.after.json" || fail "$sample: synctrail list"
        summary="$("$PYTHON" "$WORK/check.py" "$mode" "$sample" "$WORK/$name.$mode.response.json" \
            "$WORK/$name.before.json" "$WORK/$name.after.json" "$WORK/$name.state.json" 2>"$WORK/check.err")" ||
            fail "$(cat "$WORK/check.err")"
        say "ok ($mode delivery) $summary"
    done
done

stop_watch
say "all ${#samples[@]} samples passed, delivered twice, under cargo lambda watch"
