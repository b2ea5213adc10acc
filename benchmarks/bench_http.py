"""Child programs: a gevent.pywsgi server, and the HTTP load client.

``bench_http.py server none|gevent|hubmon`` serves a small WSGI application
on 127.0.0.1 (an ephemeral port) until its stdin closes. It prints
``READY <port> <monitor class>`` once its hub runs. Variant ``gevent`` never
imports hubmon; ``hubmon`` imports it before gevent. Access logging is off:
it would dominate the cost of a request and hide what is measured.

``bench_http.py client SECONDS ROUNDS CONNECTIONS SEED NAME:PORT:PID...``
opens CONNECTIONS keep-alive connections (HTTP/1.1, one request in flight
per connection) to each server, then for ROUNDS rounds drives each server in
turn, in a shuffled order, for SECONDS each. It reports, for every round and
server, the requests per second and the server's CPU time (all its threads,
monitor included) per request. Short windows alternating quickly make
neighbouring windows see the same noise of a shared machine. The client is
a plain gevent program on gevent's cooperative sockets; it parses just
enough of each response (the Content-Length) to know where it ends.
"""
from __future__ import annotations

import sys
import time

BODY = b"Hello, World! " * 8
REQUEST = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: hubmon-bench\r\n\r\n"


def application(environ, start_response):
    """The WSGI application under test: a fixed small response."""
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]


def serve(variant: str) -> None:
    if variant == "hubmon":
        import hubmon  # noqa: F401 - replaces gevent's monitor thread
    elif variant not in ("none", "gevent"):
        raise SystemExit("unknown variant %r" % (variant,))
    import gevent
    from gevent import pywsgi
    from gevent.os import make_nonblocking, nb_read

    if variant != "hubmon" and "hubmon" in sys.modules:
        raise SystemExit("hubmon must not be imported in variant %s" % (variant,))
    from gevent import socket

    class Server(pywsgi.WSGIServer):
        def handle(self, client, address):
            # pywsgi writes the headers and the body with two calls: without
            # TCP_NODELAY, Nagle's algorithm and the client's delayed ACK
            # would hold every response for 40 ms.
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return super().handle(client, address)

    server = Server(("127.0.0.1", 0), application, log=None, error_log=None)
    server.start()
    gevent.sleep(0.1)                   # the hub runs: its monitor starts
    monitor = gevent.get_hub().periodic_monitoring_thread
    name = "none" if monitor is None else "%s.%s" % (type(monitor).__module__, type(monitor).__name__)
    if (variant == "none") != (monitor is None):
        raise SystemExit("variant %s runs monitor %s" % (variant, name))
    sys.stdout.write("READY %d %s\n" % (server.server_port, name))
    sys.stdout.flush()
    # Serve until the parent closes our stdin (read through the hub, which
    # never blocks on it).
    make_nonblocking(sys.stdin.fileno())
    while nb_read(sys.stdin.fileno(), 1024):
        pass
    server.stop(timeout=1)


class _Connection:
    """One keep-alive connection of the client to one server."""

    def __init__(self, port: int):
        from gevent import socket

        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffered = b""
        self.expected = None

    def _learn_length(self) -> None:
        """The first response tells how long every response is."""
        while b"\r\n\r\n" not in self.buffered:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed the connection")
            self.buffered += chunk
        head = self.buffered.partition(b"\r\n\r\n")[0]
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError("unexpected response %r" % (head[:100],))
        length = None
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError("response without Content-Length: %r" % (head,))
        self.expected = len(head) + 4 + length

    def run(self, deadline: float, done: list) -> None:
        """Request after request until the deadline; append the count to done."""
        recv = self.sock.recv
        send = self.sock.sendall
        perf_counter = time.perf_counter
        count = 0
        buffered = self.buffered
        while perf_counter() < deadline:
            send(REQUEST)
            if self.expected is None:
                self.buffered = buffered
                self._learn_length()
                buffered = self.buffered
            expected = self.expected
            while len(buffered) < expected:
                chunk = recv(65536)
                if not chunk:
                    raise RuntimeError("the server closed the connection")
                buffered += chunk
            if not buffered.startswith(b"HTTP/1.1 200"):
                raise RuntimeError("unexpected response %r" % (buffered[:100],))
            buffered = buffered[expected:]
            count += 1
        self.buffered = buffered
        done.append(count)


def drive(seconds: float, rounds: int, connections: int, seed: int, targets: list) -> None:
    """Drive the servers in turn, a shuffled order every round."""
    import random

    import gevent

    import common

    servers = []
    for target in targets:
        name, port, pid = target.split(":")
        servers.append((name, int(pid), [_Connection(int(port)) for _ in range(connections)]))
    shuffler = random.Random(seed)
    results = []
    for _ in range(rounds):
        order = list(servers)
        shuffler.shuffle(order)
        measured = {}
        for name, pid, conns in order:
            done: list = []
            cpu0 = common.process_cpu_ns(pid)
            start = time.perf_counter()
            gevent.joinall([gevent.spawn(c.run, start + seconds, done) for c in conns],
                           raise_error=True)
            elapsed = time.perf_counter() - start
            cpu = common.process_cpu_ns(pid) - cpu0
            requests = sum(done)
            measured[name] = {"requests_per_second": requests / elapsed,
                              "server_cpu_us_per_request": cpu / 1000.0 / max(requests, 1)}
        results.append(measured)
    for _, _, conns in servers:
        for c in conns:
            c.sock.close()
    common.emit(results)


def main() -> None:
    if sys.argv[1] == "server":
        serve(sys.argv[2])
    elif sys.argv[1] == "client":
        drive(float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
              sys.argv[6:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
