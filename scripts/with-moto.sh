#!/usr/bin/env bash
# Runs a command with a private moto server (the AWS API emulator) on a free loopback port:
#
#   scripts/with-moto.sh cargo test --locked --workspace
#
# Installs moto[server]==5.2.1 with pip when `moto_server` is missing, exports SYNCTRAIL_TEST_AWS_ENDPOINT and
# dummy credentials, runs the command, and stops the server however the command ends. Exits with the command's
# status. MOTO_LOG (default: a temporary file) receives the server's output.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

PYTHON="${PYTHON:-python3}"
MOTO_VERSION="5.2.1"

if ! command -v moto_server >/dev/null 2>&1; then
    echo "with-moto: installing moto[server]==$MOTO_VERSION" >&2
    "$PYTHON" -m pip install --quiet "moto[server]==$MOTO_VERSION" >&2
    hash -r
    if ! command -v moto_server >/dev/null 2>&1; then
        echo "with-moto: moto_server is still not on PATH after pip install; add pip's bin directory to PATH" >&2
        exit 1
    fi
fi

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ENDPOINT="http://127.0.0.1:$PORT"
MOTO_LOG="${MOTO_LOG:-$(mktemp -t moto.XXXXXX.log)}"

moto_server -H 127.0.0.1 -p "$PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!

stop_moto() {
    if kill -0 "$MOTO_PID" 2>/dev/null; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
}
trap stop_moto EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Wait (at most 30 s) until the server answers.
ready=0
for _ in $(seq 1 300); do
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
        echo "with-moto: moto_server exited early; its log ($MOTO_LOG):" >&2
        cat "$MOTO_LOG" >&2
        exit 1
    fi
    if "$PYTHON" -c "import urllib.request; urllib.request.urlopen('$ENDPOINT/moto-api/', timeout=1)" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.1
done
if [ "$ready" -ne 1 ]; then
    echo "with-moto: moto_server did not answer on $ENDPOINT within 30 s; its log ($MOTO_LOG):" >&2
    cat "$MOTO_LOG" >&2
    exit 1
fi
echo "with-moto: moto $MOTO_VERSION on $ENDPOINT (pid $MOTO_PID, log $MOTO_LOG)" >&2

export SYNCTRAIL_TEST_AWS_ENDPOINT="$ENDPOINT"
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1

status=0
"$@" || status=$?
exit "$status"
