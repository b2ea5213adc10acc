"""The program behind the reports of docs/reading-a-report.rst.

Run it with ``GEVENT_MONITOR_THREAD_ENABLE=true python reading_a_report.py``
(Linux, for the causes). It blocks its hub four ways: a query over a plain
socket to a server that answers late, a handler that computes in two
functions in turn, the same slow handler three times in a row, and a slow
callback run by the hub itself.
"""
import socket
import threading
import time

import gevent

import hubmon  # noqa: F401 - the only change a program needs


def slow_server(delay):
    """A local TCP server, in a thread of its own, that answers after *delay* seconds."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            connection, _ = listener.accept()
            with connection:
                connection.recv(64)
                time.sleep(delay)
                connection.sendall(b"42\n")

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()


def fetch_user(address):
    with socket.create_connection(address) as db:  # not patched: blocks the hub
        db.sendall(b"SELECT name FROM users WHERE id = 42\n")
        return db.recv(64)


def parse(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def render(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def handle_report():
    parse(0.3)
    render(0.3)


def resize_thumbnail():
    time.sleep(0.15)


def flush_metrics():
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass


address = slow_server(0.4)
gevent.sleep(0.1)
gevent.spawn(fetch_user, address).join()
gevent.sleep(0.2)
gevent.spawn(handle_report).join()
gevent.sleep(0.2)
for _ in range(3):
    gevent.spawn(resize_thumbnail).join()
    gevent.sleep(0.05)
gevent.get_hub().loop.run_callback(flush_metrics)
gevent.sleep(0.6)
