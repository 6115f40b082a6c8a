#!/usr/bin/env bash
# `make bench-lambda`: the deployable functions as Lambda runs them, inside the moto server that
# scripts/with-moto.sh started:
#  1. `make build` (the Makefile's LAMBDA_BUILD, profile `release-lambda`): every function's zip, and its size;
#  2. fresh resources in moto (`synctrail --backend aws setup`), as the template's functions see them;
#  3. the processor's bootstrap under a stand-in Lambda Runtime API (scripts/lambda_standin.py) fed SQS batches of
#     happy-path events on the AWS backend with the reference mirror (DynamoDB): cold start (process start to its first
#     `next`), init CPU, CPU per event (all threads, after the first batch), peak memory.
#
#   scripts/with-moto.sh scripts/bench-lambda.sh
#   EVENTS=1000 scripts/with-moto.sh scripts/bench-lambda.sh
#   DESTINATION=http scripts/with-moto.sh scripts/bench-lambda.sh   # the framework with an HTTP destination
#   PROCESSOR_ZIP=/tmp/other.zip scripts/with-moto.sh scripts/bench-lambda.sh   # another build of the processor
#
# DESTINATION=mirror (the default) applies to the reference mirror in DynamoDB, as the template deploys it;
# DESTINATION=http to examples/http-receiver/receiver.py on loopback (signed requests, connections kept alive), so
# the function's CPU is the framework's plus one HTTP request per event instead of the mirror's DynamoDB requests.
#
# The CPU includes the SDK's request signing and the HTTP client talking to moto on loopback (plain HTTP: no TLS, which
# real AWS adds). moto closes every connection after its answer, real AWS endpoints keep them open: the function talks
# to moto through scripts/keepalive_front.py, which keeps the function's connections alive (FRONT=none: to moto
# directly, a TCP connection per request). Prints a summary; the JSON report stays in $HOME_DIR/bench-lambda.json.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO="${CARGO:-cargo}"
PYTHON="${PYTHON:-python3}"
HOME_DIR="${HOME_DIR:-.synctrail}"
EVENTS="${EVENTS:-300}"
FRONT="${FRONT:-keepalive}"
DESTINATION="${DESTINATION:-mirror}"
ENDPOINT="${SYNCTRAIL_TEST_AWS_ENDPOINT:?run inside scripts/with-moto.sh (it sets SYNCTRAIL_TEST_AWS_ENDPOINT)}"
TARGET="${CARGO_TARGET_DIR:-target}"
# The processor run (default: the zip `make build` writes). Another build's zip, run alternately with this one, is
# how two builds compare: figures move between machines and hours.
PROCESSOR_ZIP="${PROCESSOR_ZIP:-$TARGET/lambda/processor/bootstrap.zip}"

make --no-print-directory build CARGO="$CARGO"
echo "== zips (make build, x86_64)"
"$PYTHON" - "$TARGET"/lambda/*/bootstrap.zip <<'PY'
import os, sys, zipfile
for path in sys.argv[1:]:
    unzipped = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    name = os.path.basename(os.path.dirname(path))
    print(f"{name:<12} {os.path.getsize(path) / 1e6:6.2f} MB zipped, {unzipped / 1e6:6.2f} MB unzipped")
PY

WORK="$(mktemp -d -t bench-lambda.XXXXXX)"
SERVERS=() # the helper servers started below, stopped on exit
cleanup() {
    [ ${#SERVERS[@]} -eq 0 ] || kill "${SERVERS[@]}" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
"$PYTHON" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$PROCESSOR_ZIP" "$WORK"
chmod +x "$WORK/bootstrap"

"$CARGO" build --locked --quiet -p synctrail-cli --bin synctrail
CLI="$TARGET/debug/synctrail"
export AWS_ENDPOINT_URL="$ENDPOINT" AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
PREFIX="bench-lambda-$(date +%s)-$$"
"$CLI" --backend aws --json setup --prefix "$PREFIX" >"$WORK/setup.json"
eval "$("$PYTHON" - "$WORK/setup.json" <<'PY'
import json, shlex, sys
r = json.load(open(sys.argv[1]))
for var, key in (("SYNCTRAIL_TABLE", "table"), ("SYNCTRAIL_BUCKET", "bucket"),
                 ("SYNCTRAIL_QUEUE_URL", "queue_url"), ("SYNCTRAIL_DLQ_URL", "dlq_url")):
    print(f"export {var}={shlex.quote(r[key])}")
PY
)"
# As the template configures the processor: the receive count known (no SQS request at a cold start), logs as JSON.
export SYNCTRAIL_MAX_RECEIVES=5 RUST_LOG="${RUST_LOG:-info}"

case "$FRONT" in
keepalive)
    "$PYTHON" scripts/keepalive_front.py --upstream "$ENDPOINT" --port-file "$WORK/front.port" &
    SERVERS+=($!)
    for _ in $(seq 1 100); do [ -s "$WORK/front.port" ] && break; sleep 0.1; done
    [ -s "$WORK/front.port" ] || { echo "bench-lambda: the keep-alive front did not start" >&2; exit 1; }
    export AWS_ENDPOINT_URL="http://127.0.0.1:$(cat "$WORK/front.port")"
    ;;
none) ;;
*) echo "bench-lambda: FRONT must be keepalive or none, not $FRONT" >&2; exit 2 ;;
esac

case "$DESTINATION" in
mirror) ;;
http)
    export SYNCTRAIL_DESTINATION=http SYNCTRAIL_DESTINATION_SECRET="bench-lambda-$$"
    "$PYTHON" examples/http-receiver/receiver.py --db "$WORK/receiver.db" --port 0 >"$WORK/receiver.out" 2>&1 &
    SERVERS+=($!)
    for _ in $(seq 1 100); do grep -q '^listening on ' "$WORK/receiver.out" && break; sleep 0.1; done
    RECEIVER_URL="$(sed -n 's/^listening on //p' "$WORK/receiver.out")"
    [ -n "$RECEIVER_URL" ] || { echo "bench-lambda: the HTTP receiver did not start" >&2; cat "$WORK/receiver.out" >&2; exit 1; }
    export SYNCTRAIL_DESTINATION_URL="$RECEIVER_URL"
    ;;
*) echo "bench-lambda: DESTINATION must be mirror or http, not $DESTINATION" >&2; exit 2 ;;
esac

mkdir -p "$HOME_DIR"
echo "== the processor under a stand-in Runtime API: $EVENTS events in batches of 10 (machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); connections: $FRONT; destination: $DESTINATION)"
"$PYTHON" scripts/lambda_standin.py --bootstrap "$WORK/bootstrap" --events "$EVENTS" --batch 10 \
    --log "$WORK/function.log" >"$HOME_DIR/bench-lambda.json" || { tail -20 "$WORK/function.log" >&2; exit 1; }
cat "$HOME_DIR/bench-lambda.json"
