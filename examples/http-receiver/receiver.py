#!/usr/bin/env python3
"""A receiver for synctrail's HTTP destination (docs/destination-protocol.md), Python standard library only.

It verifies `Synctrail-Signature`, stores each entity's newest state in SQLite with an order guard
(`... WHERE stored order < new order`), applies each event at most once (an `effects` table keyed by event id),
adds up `in_order` deltas, and answers as the protocol says: 200 applied / already applied, 409 superseded,
400 bad request, 401 bad signature. `GET /?entity=<key>` reads an entity back (for `synctrail reconcile` and
`synctrail verify`): 200 with `{state, deleted, order, event_id}`, 404 when it holds nothing.

    SYNCTRAIL_DESTINATION_SECRET=... python3 receiver.py --db receiver.db --port 8080

Without the secret in the environment it accepts unsigned requests (for a first try only). It prints
`listening on http://HOST:PORT/` once ready (`--port 0` picks a free port).
"""

import argparse
import hashlib
import urllib.parse
import hmac
import json
import re
import os
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 300  # the replay window: refuse signatures further than this from our clock
MAX_BODY_BYTES = 16 * 1024 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    key      TEXT PRIMARY KEY,
    state    TEXT,             -- the JSON state (NULL once deleted)
    ord      TEXT NOT NULL,    -- the order key as text that sorts like the order
    fence    INTEGER NOT NULL,
    event_id TEXT NOT NULL,    -- the event that wrote it
    hash     TEXT NOT NULL     -- that event's content hash
);
CREATE TABLE IF NOT EXISTS effects (
    event_id TEXT PRIMARY KEY, -- one effect per event: the idempotency record
    key      TEXT NOT NULL
);
"""


def valid_signature(secret, header, body, now=None):
    """Checks `t=<unix seconds>,v1=<hex>` against HMAC-SHA256(secret, "<t>.<body>") within the window."""
    timestamp, tags = None, []
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            timestamp = value
        elif name == "v1":
            tags.append(value)
    if timestamp is None or not re.fullmatch(r"-?[0-9]+", timestamp) or not tags:
        return False
    if abs((now or time.time()) - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest().encode()
    # As bytes: a tag that is not ASCII is simply no match (compare_digest refuses non-ASCII text).
    return any(hmac.compare_digest(expected, tag.encode("utf-8", "replace")) for tag in tags)


def order_text(order):
    """`(updated_at, version)` as text that sorts like the order: a null updated_at sorts first."""
    return f"{order.get('updated_at') or ''}#{int(order.get('version', 0)) + 2**63:020d}"


def order_of(text):
    """The order object `order_text` made `text` from."""
    updated_at, _, version = text.rpartition("#")
    return {"updated_at": updated_at or None, "version": int(version) - 2**63}


class Store:
    def __init__(self, path):
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def apply(self, change):
        """Returns (status, answer) for one change, in one transaction."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                answer = self._apply(change)
                self.db.execute("COMMIT")
                return answer
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def read(self, key):
        """The entity's record as the protocol's read answers it, or None."""
        with self.lock:
            row = self.db.execute("SELECT state, ord, event_id FROM entities WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        state = json.loads(row[0]) if row[0] is not None else None
        return {"state": state, "deleted": row[0] is None, "order": order_of(row[1]), "event_id": row[2]}

    def _apply(self, change):
        event_id, key = change["event_id"], change["entity"]["key"]
        # A forced snapshot is written even if this event was stored before (an operator's repair); a delta never twice.
        rewrite = change["forced"] and change["policy"] != "in_order"
        if not rewrite and self.db.execute("SELECT 1 FROM effects WHERE event_id = ?", (event_id,)).fetchone():
            return 200, {"result": "already_applied"}
        row = self.db.execute("SELECT state, ord, fence, event_id, hash FROM entities WHERE key = ?", (key,)).fetchone()
        order, fence = order_text(change["order"]), int(change["fence"])
        if change["policy"] == "in_order":
            delta = change["payload"].get("delta") if isinstance(change["payload"], dict) else None
            if not isinstance(delta, int) or isinstance(delta, bool):
                return 400, {"error": "an in_order payload needs an integer delta"}
            quantity = (json.loads(row[0]) or {}).get("quantity", 0) if row and row[0] else 0
            state = json.dumps({"quantity": quantity + delta})
            self.db.execute(
                "INSERT INTO entities (key, state, ord, fence, event_id, hash) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET state = excluded.state, ord = max(ord, excluded.ord), "
                "fence = max(fence, excluded.fence), event_id = excluded.event_id, hash = excluded.hash",
                (key, state, order, fence, event_id, change["content_hash"]),
            )
        else:
            if row and not change["forced"] and row[1] == order and row[4] == change["content_hash"]:
                return 200, {"result": "already_applied"}  # the same change under another event id
            if row and row[2] > fence:
                # A newer claim wrote it: a paused sender's late write (forced or not: forced skips ordering only).
                return 409, {"superseded_by": row[3]}
            state = None if change["kind"] == "delete" else json.dumps(change["payload"])
            guard = " WHERE entities.fence <= excluded.fence" if change["forced"] else " WHERE entities.ord <= excluded.ord"
            written = self.db.execute(
                "INSERT INTO entities (key, state, ord, fence, event_id, hash) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET state = excluded.state, ord = excluded.ord, fence = excluded.fence, "
                "event_id = excluded.event_id, hash = excluded.hash" + guard,
                (key, state, order, fence, event_id, change["content_hash"]),
            ).rowcount
            if not written:
                return 409, {"superseded_by": row[3] if row else f"receiver:{key}"}
        self.db.execute("INSERT OR IGNORE INTO effects (event_id, key) VALUES (?, ?)", (event_id, key))
        return 200, {"result": "applied"}


def handler(store, secret):
    class Receiver(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: synctrail pools its connections
        # An answer is two writes, its head and its body: without TCP_NODELAY the body waits for the client to
        # acknowledge the head, which Linux delays up to 40 ms (≈ 22 answers per second per connection).
        disable_nagle_algorithm = True

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                return self.answer(413, {"error": "body too large"})
            body = self.rfile.read(length)
            if secret is not None and not valid_signature(secret, self.headers.get("Synctrail-Signature"), body):
                return self.answer(401, {"error": "bad or stale signature"})
            try:
                change = json.loads(body)
                status, answer = store.apply(change)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                return self.answer(400, {"error": f"not a change: {e}"})
            self.answer(status, answer)

        def do_GET(self):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            key = (query.get("entity") or [None])[0]
            if not key:
                return self.answer(400, {"error": "GET needs ?entity=<entity key>"})
            # A read is signed like a change, over the entity key instead of a body.
            if secret is not None and not valid_signature(secret, self.headers.get("Synctrail-Signature"), key.encode()):
                return self.answer(401, {"error": "bad or stale signature"})
            record = store.read(key)
            if record is None:
                return self.answer(404, {"error": "no such entity"})
            self.answer(200, record)

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # never log bodies; one line per request on stderr
            sys.stderr.write("%s %s\n" % (self.address_string(), format % args))

    return Receiver


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="receiver.db")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    secret = os.environ.get("SYNCTRAIL_DESTINATION_SECRET")
    if secret is None:
        sys.stderr.write("SYNCTRAIL_DESTINATION_SECRET is not set: accepting unsigned requests\n")
    elif not secret:
        sys.exit("SYNCTRAIL_DESTINATION_SECRET is set but empty: set it to the signing secret, or unset it")
    server = ThreadingHTTPServer((args.host, args.port), handler(Store(args.db), secret.encode() if secret else None))
    print(f"listening on http://{args.host}:{server.server_address[1]}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
