#!/usr/bin/env python3
"""A stand-in for the Lambda Runtime API, to measure a function binary as Lambda runs it (`make bench-lambda`).

Starts the `bootstrap` executable given with AWS_LAMBDA_RUNTIME_API pointing here (127.0.0.1, a free port) and the
environment of the caller, answers its `GET …/invocation/next` with SQS batches of happy-path events (each a new
entity, so every event is claimed, applied and completed), and reads each response: a partial batch response whose
`batchItemFailures` must be empty. Then measures, from /proc:

- cold start: from starting the process to its first `next` request (the runtime's init: configuration, clients,
  secrets), and the CPU it spent until then;
- CPU per event after the first batch (every thread's on-CPU time, /proc/PID/task/*/schedstat, in nanoseconds);
- the process's peak resident memory (VmHWM).

    scripts/lambda_standin.py --bootstrap target/lambda/processor/bootstrap --events 300 --batch 10

Prints one JSON report on stdout; the function's own output goes to --log. Exits non-zero when the function fails
an invocation, reports an error, exits early, or does not ask for work within --timeout seconds.
"""

import argparse
import datetime
import glob
import http.server
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid

PREFIX = "/2018-06-01/runtime"


def cpu_ns(pid):
    """On-CPU time of every thread of `pid` so far, in nanoseconds (the first field of each task's schedstat)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended between listing and reading
    return total


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def sqs_batch(run, first, count):
    """`count` SQS records of new-entity events numbered from `first`, as the event source mapping delivers them."""
    now = datetime.datetime.now(datetime.timezone.utc)
    millis = str(int(now.timestamp() * 1000))
    records = []
    for i in range(first, first + count):
        body = {
            "source": "bench",
            "entity_type": "issue",
            "external_id": f"lambda-bench/{run}#{i}",
            "updated_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "delivery_id": f"{run}-{i}",
            "payload": {
                "number": i,
                "title": f"Widget crashes on resize ({i})",
                "state": "open",
                "labels": ["bug", "ui"],
                "body": "Steps: open the widget, resize the window twice; the widget crashes. " * 3,
            },
        }
        records.append({
            "messageId": str(uuid.uuid4()),
            "receiptHandle": "AQEB" + uuid.uuid4().hex,
            "body": json.dumps(body, separators=(",", ":")),
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": millis,
                "SenderId": "AROAEXAMPLEID:lambda-bench",
                "ApproximateFirstReceiveTimestamp": millis,
            },
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:lambda-bench",
            "awsRegion": "us-east-1",
        })
    return {"Records": records}


class Standin:
    """The invocations to hand out, what came back, and when the first request arrived."""

    def __init__(self, batches, deadline_seconds):
        self.pending = queue.Queue()
        for batch in batches:
            self.pending.put(batch)
        self.total = len(batches)
        self.deadline_seconds = deadline_seconds
        self.first_next = None
        self.first_next_cpu = None
        self.after_first_cpu = None
        self.after_first_at = None
        self.answered = 0
        self.failures = []
        self.done = threading.Event()
        self.measured = threading.Event()
        self.pid = None
        self.lock = threading.Lock()


def handler_for(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # An answer goes out as two writes, its head and its body: without TCP_NODELAY the body waits for the
        # client to acknowledge the head, which Linux delays up to 40 ms.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def reply(self, code, body=b"", headers=()):
            self.send_response(code)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path != f"{PREFIX}/invocation/next":
                return self.reply(404)
            with state.lock:
                if state.first_next is None:
                    state.first_next = time.monotonic()
                    state.first_next_cpu = cpu_ns(state.pid)
            try:
                batch = state.pending.get(timeout=1)
            except queue.Empty:
                # Everything handed out: hold the request until the measurement is read (Lambda would freeze the
                # sandbox here), then end the function.
                state.measured.wait(60)
                return self.reply(410)
            body = json.dumps(batch).encode()
            request_id = str(uuid.uuid4())
            deadline = int((time.time() + state.deadline_seconds) * 1000)
            self.reply(200, body, [
                ("Lambda-Runtime-Aws-Request-Id", request_id),
                ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench"),
                ("Lambda-Runtime-Trace-Id", "Root=1-5e1b4151-5ac6c58f5b5daa6532d3a8b3;Parent=a1b2c3d4e5f60718;Sampled=0"),
                ("Content-Type", "application/json"),
            ])

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            self.reply(202, b'{"status":"OK"}', [("Content-Type", "application/json")])
            if self.path.endswith("/response"):
                try:
                    failures = json.loads(body).get("batchItemFailures", [])
                except (ValueError, AttributeError):
                    failures = [f"unreadable response: {body[:200]!r}"]
                outcome = failures
            else:
                outcome = [f"{self.path}: {body[:500]!r}"]
            with state.lock:
                state.answered += 1
                state.failures.extend(outcome)
                if state.answered == 1:
                    state.after_first_cpu = cpu_ns(state.pid)
                    state.after_first_at = time.monotonic()
                if state.answered == state.total or self.path.endswith("/init/error"):
                    state.done.set()

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="the function's executable (unzipped bootstrap)")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--deadline", type=float, default=30.0, help="each invocation's deadline, seconds")
    parser.add_argument("--timeout", type=float, default=600.0, help="the whole run's limit, seconds")
    parser.add_argument("--log", default=os.devnull, help="where the function's output goes")
    args = parser.parse_args()
    if args.events < 2 * args.batch:
        sys.exit("--events must cover at least two batches (the first one is the warm-up)")

    run = uuid.uuid4().hex[:8]
    batches = [sqs_batch(run, first, min(args.batch, args.events - first)) for first in range(0, args.events, args.batch)]
    state = Standin(batches, args.deadline)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    server.daemon_threads = True
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": env.get("AWS_LAMBDA_FUNCTION_NAME", "lambda-bench"),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/lambda-bench",
    })
    with open(args.log, "ab") as log:
        started = time.monotonic()
        process = subprocess.Popen([args.bootstrap], env=env, stdout=log, stderr=subprocess.STDOUT)
        state.pid = process.pid
        finished = state.done.wait(args.timeout)
        ended = time.monotonic()
        alive = process.poll() is None
        end_cpu = cpu_ns(process.pid) if alive else None
        rss = peak_rss_kib(process.pid) if alive else 0
        state.measured.set()
        process.kill()
        process.wait()
    server.shutdown()

    if state.first_next is None:
        sys.exit(f"the function never asked for work (exit code {process.returncode}); see {args.log}")
    if not alive:
        sys.exit(f"the function exited during the run (exit code {process.returncode}); see {args.log}")
    if not finished:
        sys.exit(f"{state.answered} of {state.total} invocations answered within {args.timeout} s; see {args.log}")
    # A record the function hands back (a throttled or failing backend: moto under load answers some writes with
    # 500) is what Lambda would deliver again; counted, and the run refused only when it is more than a tenth.
    if len(state.failures) * 10 > args.events:
        sys.exit(f"{len(state.failures)} failed records or errors, e.g. {state.failures[:3]}; see {args.log}")

    steady_events = args.events - len(batches[0]["Records"])
    report = {
        "events": args.events,
        "batch": args.batch,
        "cold_start_ms": round((state.first_next - started) * 1000, 1),
        "init_cpu_ms": round(state.first_next_cpu / 1e6, 1),
        "first_batch_cpu_ms": round((state.after_first_cpu - state.first_next_cpu) / 1e6, 1),
        "cpu_us_per_event": round((end_cpu - state.after_first_cpu) / 1e3 / steady_events, 1),
        "events_per_second": round(steady_events / (ended - state.after_first_at), 1),
        "peak_rss_mib": round(rss / 1024, 1),
        "records_handed_back": len(state.failures),
        "bootstrap_bytes": os.path.getsize(args.bootstrap),
    }
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    socket.setdefaulttimeout(120)
    main()
