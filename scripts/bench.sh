#!/usr/bin/env bash
# `make bench`, release build, on the embedded backend:
#  1. `synctrail bench`: the whole pipeline (a happy-path workload sent first, then processed by the local runtime with
#     4 workers) with the reference mirror as the destination: events/s, latency, CPU and bytes written per event, the
#     write-ahead log's peak size; then, in the same process on the same disk, the baseline: a plain SQLite loop
#     writing the rows the run left (events, heads, mirror) into a fresh database, one commit per 10 events — and
#     the pipeline's events/s divided by the loop's;
#  2. `synctrail bench destination`: the destination alone, without the engine, 16 calls in flight (as one
#     invocation's lanes make them) — the reference mirror (in this process), then the built-in HTTP destination
#     delivering to the example receiver (examples/http-receiver/receiver.py: another process on 127.0.0.1, signed
#     requests): the CPU this process spends per apply, and what the HTTP destination adds over the mirror;
#  3. `synctrail bench webhooks`: the webhook ingest handler alone (signature, mapping, one queue send per webhook);
#  4. `synctrail bench growth`: the happy path in rounds of one newer event per entity (20,000 entities, 5 rounds),
#     each round measured with the baseline loop writing its rows on top of the earlier rounds': what an event costs
#     as the store grows.
#
#   scripts/bench.sh
#   BENCH_ARGS="--events 5000" APPLIES=2000 GROWTH_ARGS="--entities 5000 --rounds 3" scripts/bench.sh
#
# Prints a summary; the JSON reports stay in $HOME_DIR/bench-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO="${CARGO:-cargo}"
PYTHON="${PYTHON:-python3}"
HOME_DIR="${HOME_DIR:-.synctrail}"
APPLIES="${APPLIES:-5000}"
# shellcheck disable=SC2206 # BENCH_ARGS and GROWTH_ARGS are lists of flags
ARGS=(${BENCH_ARGS:-})
# shellcheck disable=SC2206
GROWTH=(${GROWTH_ARGS:-})
SECRET="bench-secret-$(date +%s)-0123456789"

"$CARGO" build --locked --release -p synctrail-cli
BIN="${CARGO_TARGET_DIR:-target}/release/synctrail"
mkdir -p "$HOME_DIR"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== synctrail bench (the whole pipeline, the reference mirror)"
"$BIN" --home "$HOME_DIR" --json bench "${ARGS[@]}" >"$HOME_DIR/bench-pipeline.json"
echo "== synctrail bench webhooks (the ingest handler, in this process)"
"$BIN" --home "$HOME_DIR" --json bench webhooks --webhooks "$APPLIES" >"$HOME_DIR/bench-webhooks.json"
echo "== synctrail bench growth (rounds of one newer event per entity, each against the baseline loop)"
"$BIN" --home "$HOME_DIR" --json bench growth "${GROWTH[@]}" >"$HOME_DIR/bench-growth.json"
echo "== synctrail bench destination (the reference mirror, in this process)"
"$BIN" --home "$HOME_DIR" --json bench destination --applies "$APPLIES" >"$HOME_DIR/bench-mirror.json"

RECEIVER_LOG="$HOME_DIR/receiver.log"
rm -f "$HOME_DIR/receiver.db" "$RECEIVER_LOG"
SYNCTRAIL_DESTINATION_SECRET="$SECRET" "$PYTHON" examples/http-receiver/receiver.py --db "$HOME_DIR/receiver.db" \
    --port 0 >"$RECEIVER_LOG" 2>&1 &
RECEIVER=$!
trap 'kill "$RECEIVER" 2>/dev/null || true' EXIT
URL=""
for _ in $(seq 1 100); do
    URL="$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$RECEIVER_LOG" | head -n 1)"
    [ -n "$URL" ] && break
    kill -0 "$RECEIVER" 2>/dev/null || { cat "$RECEIVER_LOG" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { echo "bench: the example receiver did not start" >&2; exit 1; }

echo "== synctrail --destination http … bench destination (the example receiver at $URL, another process)"
SYNCTRAIL_DESTINATION_SECRET="$SECRET" "$BIN" --home "$HOME_DIR" --destination http --destination-url "$URL" --json \
    bench destination --applies "$APPLIES" >"$HOME_DIR/bench-http.json"
"$PYTHON" - "$HOME_DIR/bench-pipeline.json" "$HOME_DIR/bench-mirror.json" "$HOME_DIR/bench-http.json" \
    "$HOME_DIR/bench-webhooks.json" "$HOME_DIR/bench-growth.json" <<'EOF'
import json, sys
pipeline, mirror, http, webhooks, growth = (json.load(open(p)) for p in sys.argv[1:6])
w = webhooks
print(f"webhooks  {w['webhooks']} signed deliveries: {w['cpu_per_webhook_us']:.0f} µs CPU per webhook "
      f"({w['cpu_per_verdict_us']:.0f} µs verify and map), {w['sends_per_webhook']:.2f} queue messages per webhook")
p = pipeline
fmt = lambda v, f: "n/a" if v is None else f.format(v)
print(f"pipeline  {p['events']} events, {p['workers']} workers: {p['events_per_second']:.0f} events/s, "
      f"{fmt(p['cpu_per_event_us'], '{:.0f}')} µs CPU per event, "
      f"{fmt(p['bytes_written_per_event'] and p['bytes_written_per_event'] / 1024, '{:.1f}')} KiB written per event, "
      f"WAL peak {p['wal_peak_bytes'] / 2**20:.1f} MiB, latency p50 {p['latency_p50_ms']:.1f} ms, "
      f"p99 {p['latency_p99_ms']:.1f} ms")
b = p['baseline']
print(f"baseline  SQLite loop, same rows, same disk, 1 commit per {b['commit_every']} events: "
      f"{b['events_per_second']:.0f} events/s, {fmt(b['cpu_per_event_us'], '{:.0f}')} µs CPU per event, "
      f"{fmt(b['bytes_written_per_event'] and b['bytes_written_per_event'] / 1024, '{:.1f}')} KiB written per event, "
      f"WAL peak {b['wal_peak_bytes'] / 2**20:.1f} MiB")
print(f"pipeline ÷ baseline: {p['ratio_to_baseline']:.2f}× (the aim: ≥ 1.5×)")
for r in (mirror, http):
    print(f"{r['destination']:9} {r['applies']} applies, {r['in_flight']} in flight: {r['applies_per_second']:.0f}/s, "
          f"{r['cpu_per_apply_us']:.1f} µs CPU per apply in this process; outcomes {r['outcomes']}")
print(f"the HTTP destination over the mirror: {http['cpu_per_apply_us'] - mirror['cpu_per_apply_us']:+.1f} µs CPU "
      "per apply in this process (the receiver's work is in its own process)")
print(f"growth    {growth['entities']} entities, one newer event each per round:")
for r in growth['rounds']:
    e = r['embedded']
    print(f"  round {r['round']} ({r['records_before']} records before): {e['events_per_second']:.0f} events/s, "
          f"{fmt(e['cpu_per_event_us'], '{:.0f}')} µs CPU, "
          f"{fmt(e['bytes_written_per_event'] and e['bytes_written_per_event'] / 1024, '{:.1f}')} KiB written per event; "
          f"baseline {e['baseline']['events_per_second']:.0f} events/s; ratio {e['ratio_to_baseline']:.2f}×")
EOF
