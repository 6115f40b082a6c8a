#!/usr/bin/env bash
# `make bench-instructions`: the instructions the embedded pipeline executes per event, counted by valgrind's
# callgrind — a figure that, unlike CPU time on a shared machine (±8 % from run to run), repeats within 0.1 % for
# one binary, so a change worth 1 % shows (docs/performance.md, "Instruction counts").
#
# Counts the local runtime's thread from the first receive to quiescence (`synctrail bench`, the happy path, the
# reference mirror), not the sending before it nor the baseline loop after it. Compare binaries only when their
# runs end with the same statuses (printed): the timing under valgrind decides which superseded events are
# canceled, and a run with other statuses does other work. Under valgrind SHA-256 runs without the CPU's SHA
# extensions, so its share is overstated; an instruction is not a cycle (memcpy, page faults, system calls).
#
#   scripts/bench-instructions.sh                      # the release build, 5,000 events
#   EVENTS=2000 scripts/bench-instructions.sh /tmp/before/synctrail target/release/synctrail
#   KEEP=1 …                                           # keep callgrind.<n>.out for callgrind_annotate
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO="${CARGO:-cargo}"
EVENTS="${EVENTS:-5000}"
command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null || {
    echo "bench-instructions: needs valgrind (with callgrind_annotate): e.g. apt-get install valgrind" >&2
    exit 2
}
BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
    "$CARGO" build --locked --release -p synctrail-cli
    BINS=("${CARGO_TARGET_DIR:-target}/release/synctrail")
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
n=0
for bin in "${BINS[@]}"; do
    n=$((n + 1))
    out="$WORK/callgrind.$n.out"
    valgrind --tool=callgrind --toggle-collect='synctrail_cli::runtime::LocalRuntime::run*' \
        --callgrind-out-file="$out" "$bin" --home "$WORK/home-$n" bench --events "$EVENTS" >"$WORK/bench.$n.log" 2>&1 || {
        cat "$WORK/bench.$n.log" >&2
        exit 1
    }
    total="$(callgrind_annotate "$out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)"
    statuses="$(sed -n 's/^final statuses: //p' "$WORK/bench.$n.log")"
    echo "$bin: $((total / EVENTS)) instructions per event ($total for $EVENTS events); final statuses: $statuses"
    if [ -n "${KEEP:-}" ]; then cp "$out" "callgrind.$n.out"; fi
done
