#!/usr/bin/env python3
"""A keep-alive front for moto, so that a client measured against it keeps its connections as it would with AWS.

moto's server (werkzeug) answers every request with `Connection: close`, so an AWS SDK client talking to it opens a
TCP connection per request: on the function's side a `socket`, `connect` and `close` each time, which real AWS
endpoints (HTTP/1.1 keep-alive) do not cost. `make bench-lambda` measures the processor's CPU per event through this
front: it keeps each client connection open, forwards each request unchanged (method, path, headers — the signed
`Host` included — and body) to moto on a connection of its own, and returns moto's answer with its length.

    scripts/keepalive_front.py --upstream http://127.0.0.1:PORT --port-file FILE

Listens on a free loopback port, writes it to FILE once listening, and serves until killed.
"""

import argparse
import http.client
import http.server
import os
import sys
import urllib.parse

# Headers about one hop, never forwarded (RFC 9110 §7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


def read_chunked(stream):
    """The body of a request sent with `Transfer-Encoding: chunked`, decoded."""
    body = bytearray()
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailer fields
            return bytes(body)
        body += stream.read(size)
        stream.readline()  # the CRLF after each chunk


def handler_for(upstream):
    class Front(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive unless the client asks otherwise
        # An answer goes out as two writes, its head and its body: without TCP_NODELAY the body waits for the
        # client to acknowledge the head, which Linux delays up to 40 ms.
        disable_nagle_algorithm = True

        def forward(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                body = read_chunked(self.rfile)
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body or self.command in ("POST", "PUT"):
                headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            except OSError as e:
                self.send_error(502, f"moto did not answer: {e}")
                return
            finally:
                conn.close()
            self.send_response_only(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            declared = answer.getheader("Content-Length")
            # A HEAD answer states the length of the body it leaves out.
            self.send_header("Content-Length", declared if self.command == "HEAD" and declared else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = forward

        def log_message(self, *args):
            pass  # one line per request would outweigh the measurement

    return Front


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="moto's endpoint, e.g. http://127.0.0.1:5000")
    parser.add_argument("--port-file", required=True, help="where to write the port this front listens on")
    args = parser.parse_args()
    upstream = urllib.parse.urlsplit(args.upstream)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(upstream))
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
