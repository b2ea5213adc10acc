"""The kernel's view of a thread (src/cause.c), through _core.kernel_view.

Each test starts a real thread that blocks in one way and reads its view
from the main thread until the expected kind appears: the thread must get
into the call first, so the only timing is a deadline of a few seconds.
Every thread is unblocked at the end, except the one in time.sleep, which
cannot be woken and is a daemon.
"""
from __future__ import annotations

import os
import re
import select
import socket
import sys
import threading
import time
from typing import Callable, Iterator, Tuple

import pytest

from hubmon import _core

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc")

DEADLINE = 5.0
KINDS = ("unknown", "cpu", "sleep", "io", "lock")

View = Tuple[str, str, bool, int, str]


def start(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def view_until(thread: threading.Thread, kind: str, says: str = "") -> View:
    """The first view of `thread` of this kind whose detail holds `says`.

    Fails with the last views seen when none came within the deadline.
    """
    seen = []
    deadline = time.monotonic() + DEADLINE
    while True:
        view = _core.kernel_view(thread.native_id)
        assert view[0] in KINDS
        if view[0] == kind and says in view[1]:
            return view
        if not seen or seen[-1] != view:
            seen.append(view)
        if time.monotonic() > deadline:
            pytest.fail(f"no {kind!r} view within {DEADLINE} s; seen: {seen[-5:]}")
        time.sleep(0.001)


def tcp_pair(sock: socket.socket) -> str:
    local, peer = sock.getsockname(), sock.getpeername()
    return f"TCP {local[0]}:{local[1]} -> {peer[0]}:{peer[1]}"


@pytest.fixture
def connection() -> Iterator[Tuple[socket.socket, socket.socket]]:
    """A client connected to a local TCP server that accepted it and does not answer."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        try:
            yield client, accepted
        finally:
            accepted.close()        # the client's recv returns b""
            client.close()


def test_time_sleep_is_a_sleep():
    thread = start(lambda: time.sleep(DEADLINE))
    kind, detail, waits, syscall, state = view_until(thread, "sleep")
    assert "sleep" in detail
    assert not waits
    assert syscall >= 0
    assert state == "S"


def test_blocking_recv_names_the_tcp_connection(connection):
    client, accepted = connection
    thread = start(lambda: client.recv(1))
    kind, detail, waits, syscall, state = view_until(thread, "io")
    assert detail == f"recvfrom on fd {client.fileno()}: {tcp_pair(client)}"
    assert not waits
    assert syscall >= 0
    accepted.sendall(b"x")
    thread.join(DEADLINE)
    assert not thread.is_alive()


def test_recv_with_a_timeout_polls_the_connection(connection):
    client, accepted = connection
    client.settimeout(DEADLINE)
    thread = start(lambda: client.recv(1))
    kind, detail, waits, syscall, state = view_until(thread, "io")
    # poll on x86_64; ppoll where there is no poll syscall (aarch64).
    assert re.match(r"p?poll on fd %d: " % client.fileno(), detail), detail
    assert detail.endswith(tcp_pair(client))
    assert waits is True
    accepted.sendall(b"x")
    thread.join(DEADLINE)
    assert not thread.is_alive()


def test_select_on_a_pipe_names_the_pipe():
    r, w = os.pipe()
    try:
        thread = start(lambda: select.select([r], [], [], DEADLINE))
        kind, detail, waits, syscall, state = view_until(thread, "io")
        assert re.match(r"(p?select|pselect6) on fd %d: pipe:\[\d+\]$" % r, detail), detail
        assert waits is True
        os.write(w, b"x")
        thread.join(DEADLINE)
        assert not thread.is_alive()
    finally:
        os.close(r)
        os.close(w)


def test_poll_on_two_pipes_names_the_first():
    first, second = os.pipe(), os.pipe()
    poller = select.poll()
    poller.register(second[0], select.POLLIN)
    poller.register(first[0], select.POLLIN)
    try:
        thread = start(lambda: poller.poll(DEADLINE * 1000))
        kind, detail, waits, syscall, state = view_until(thread, "io")
        assert re.match(r"p?poll on 2 fds, first fd %d: pipe:\[\d+\]$" % second[0], detail), detail
        assert waits is True
        os.write(first[1], b"x")
        thread.join(DEADLINE)
        assert not thread.is_alive()
    finally:
        for fd in first + second:
            os.close(fd)


def test_select_on_an_exceptional_set_only_names_it(connection):
    # Python passes NULL for the empty read and write lists.
    client, accepted = connection
    thread = start(lambda: select.select([], [], [client], DEADLINE))
    kind, detail, waits, syscall, state = view_until(thread, "io")
    assert re.match(r"(p?select|pselect6) on fd %d: " % client.fileno(), detail), detail
    assert detail.endswith(tcp_pair(client))
    accepted.send(b"!", socket.MSG_OOB)     # urgent data: an exceptional condition
    thread.join(DEADLINE)
    assert not thread.is_alive()


def test_lock_held_elsewhere_is_a_lock():
    lock = threading.Lock()
    lock.acquire()
    try:
        thread = start(lock.acquire)
        kind, detail, waits, syscall, state = view_until(thread, "lock")
        assert detail.startswith("futex")
        assert not waits
    finally:
        lock.release()
    thread.join(DEADLINE)
    assert not thread.is_alive()


def test_busy_loop_is_on_the_cpu():
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    thread = start(spin)
    try:
        kind, detail, waits, syscall, state = view_until(thread, "cpu")
        assert detail == "running"
        assert syscall == -1
        assert not waits
    finally:
        stop.set()
    thread.join(DEADLINE)
    assert not thread.is_alive()


def test_epoll_wait_waits_for_events():
    r, w = os.pipe()
    epoll = select.epoll()
    try:
        epoll.register(r, select.EPOLLIN)
        thread = start(lambda: epoll.poll(DEADLINE))
        kind, detail, waits, syscall, state = view_until(thread, "io")
        assert re.match(r"epoll_p?wait2? on fd %d \(an epoll instance\)$" % epoll.fileno(),
                        detail), detail
        assert waits is True
        os.write(w, b"x")
        thread.join(DEADLINE)
        assert not thread.is_alive()
    finally:
        epoll.close()
        os.close(r)
        os.close(w)


def test_a_thread_that_is_gone_cannot_be_read():
    thread = start(lambda: None)
    thread.join()
    # join() returns when the thread's Python part ended; the OS thread ends
    # just after.
    kind, detail, waits, syscall, state = view_until(thread, "unknown", "cannot be read")
    assert (waits, syscall, state) == (False, -2, "")


@pytest.mark.parametrize("tid", [0, -1, os.getppid()])
def test_not_a_thread_of_this_process_cannot_be_read(tid):
    kind, detail, waits, syscall, state = _core.kernel_view(tid)
    assert kind == "unknown"
    assert "cannot be read" in detail


def test_the_calling_thread_is_running():
    kind, detail, waits, syscall, state = _core.kernel_view(threading.get_native_id())
    assert (kind, syscall, state) == ("cpu", -1, "R")


def test_kernel_view_wants_an_int():
    with pytest.raises(TypeError):
        _core.kernel_view("1")      # type: ignore[arg-type]
