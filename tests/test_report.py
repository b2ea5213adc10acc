"""Tests of hubmon.report: the thread and greenlet report, and the blocked report.

Real threads, real greenlet and real gevent; no mocks. Scenarios that depend
on gevent not being imported run in a fresh interpreter.
"""

import contextlib
import io
import os
import re
import sys
import threading
import time

import gevent
import gevent.event
import gevent.local
import greenlet
import pytest

from conftest import line_of

from hubmon import report

HERE = os.path.abspath(__file__)


def _line_of(marker):
    """The line number in this file of the line ending with ``# <marker>``."""
    return line_of(HERE, marker)


def _indent(line):
    return len(line) - len(line.lstrip(' '))


def _node_lines(lines):
    """The label lines of greenlets in a report."""
    return [line for line in lines if line.lstrip().startswith('+-- ')]


def _wait_started(greenlets, timeout=30):
    """Run the hub until every gevent greenlet has started and suspended."""
    deadline = time.monotonic() + timeout
    while any(g.gr_frame is None for g in greenlets):
        assert time.monotonic() < deadline, 'greenlets did not start'
        gevent.sleep(0.01)


def _wait_for_line(ident, line, timeout=30):
    """Wait until thread *ident* runs the line *line* of this file."""
    deadline = time.monotonic() + timeout
    while True:
        frame = sys._current_frames().get(ident)
        while frame is not None:
            if frame.f_code.co_filename == HERE and frame.f_lineno == line:
                return
            frame = frame.f_back
        assert time.monotonic() < deadline, 'thread never reached the line'
        time.sleep(0.001)


def sleeper():
    gevent.sleep(100000)


@contextlib.contextmanager
def sleeping_greenlets(count):
    greenlets = [gevent.spawn(sleeper) for _ in range(count)]
    try:
        _wait_started(greenlets)
        yield greenlets
    finally:
        gevent.killall(greenlets)


@contextlib.contextmanager
def blocked_hub(how):
    """Run a gevent hub in a thread, with a greenlet blocking it.

    Yields ``(thread ident, blocked greenlet)`` while the greenlet blocks in
    ``Event.wait`` (how='event') or in ``time.sleep`` (how='sleep').
    """
    started = threading.Event()
    release = threading.Event()
    state = {}

    def blocking_by_event():
        state['greenlet'] = gevent.getcurrent()
        started.set()
        release.wait(60)  # BLOCKING-EVENT

    def blocking_by_sleep():
        state['greenlet'] = gevent.getcurrent()
        started.set()
        while not release.is_set():
            time.sleep(0.2)  # BLOCKING-SLEEP

    def hub_thread():
        target = blocking_by_event if how == 'event' else blocking_by_sleep
        gevent.spawn(target).join()
        gevent.get_hub().destroy(destroy_loop=True)

    thread = threading.Thread(target=hub_thread, name='blocked-hub-thread',
                              daemon=True)
    thread.start()
    try:
        assert started.wait(30)
        # Wait until the thread is inside the blocking call, not before it.
        _wait_for_line(thread.ident, _line_of(
            'BLOCKING-SLEEP' if how == 'sleep' else 'BLOCKING-EVENT'))
        yield thread.ident, state['greenlet']
    finally:
        release.set()
        thread.join(30)


@contextlib.contextmanager
def waiting_thread(name='report-worker-thread'):
    release = threading.Event()

    def worker_function():
        release.wait(60)  # WORKER-WAIT

    thread = threading.Thread(target=worker_function, name=name, daemon=True)
    thread.start()
    try:
        _wait_for_line(thread.ident, _line_of('WORKER-WAIT'))
        yield thread
    finally:
        release.set()
        thread.join(30)


class Named(greenlet.greenlet):
    """A raw greenlet with a readable repr."""

    def __init__(self, run, label, parent=None):
        super().__init__(run, parent)
        self.label = label

    def __repr__(self):
        return '<Named %s>' % (self.label,)


class BadRepr(greenlet.greenlet):
    """A raw greenlet whose repr and hash raise."""

    def __repr__(self):
        raise RuntimeError('no repr for you')

    def __hash__(self):
        raise RuntimeError('no hash for you')


class BadGevent(gevent.Greenlet):
    """A gevent greenlet whose repr and name raise."""

    def __repr__(self):
        raise RuntimeError('no repr for you')

    @property
    def name(self):
        raise RuntimeError('no name for you')


# ---------------------------------------------------------------------------
# The blocked report
# ---------------------------------------------------------------------------

HEADER = re.compile(
    r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z : Greenlet (?P<greenlet>.+) '
    r'appears to be blocked for 1\.500 seconds '
    r'\(max_blocking_time 0\.100 seconds\)$')


@pytest.mark.parametrize('how, marker, call', [
    ('event', 'BLOCKING-EVENT', 'release.wait(60)'),
    ('sleep', 'BLOCKING-SLEEP', 'time.sleep(0.2)'),
])
def test_blocked_report(how, marker, call):
    with blocked_hub(how) as (ident, blocked):
        lines = report.format_blocked_report(
            greenlet=blocked, thread_ident=ident, duration=1.5,
            threshold=0.1, hub=None, monitor_repr='<the monitor>')
    assert lines[0] == '=' * 80
    match = HEADER.match(lines[1])
    assert match, lines[1]
    assert match.group('greenlet') == repr(blocked)
    assert lines[2] == '    Reported by <the monitor>'
    assert lines[3] == 'Blocked Stack (for thread id 0x%x):' % (ident,)
    info = lines.index('Info:')
    stack = lines[4:info]
    function = 'blocking_by_' + how
    frame_line = '  File "%s", line %d, in %s' % (HERE, _line_of(marker),
                                                 function)
    assert frame_line in stack
    # The source line of the blocking call follows its frame line.
    assert stack[stack.index(frame_line) + 1] == '    %s  # %s' % (call,
                                                                  marker)
    if how == 'sleep':
        # time.sleep is C: the newest Python frame is the one calling it.
        assert stack[-2] == frame_line
    # The run info follows, with the blocked greenlet marked.
    text = '\n'.join(lines[info:])
    assert 'Thread 0x%x (blocked-hub-thread) daemon=True (CURRENT)' % (
        ident,) in text
    blocked_lines = [line for line in lines if '<== BLOCKED' in line]
    assert len(blocked_lines) == 1
    assert repr(blocked) in blocked_lines[0]
    assert '[main greenlet of thread 0x%x]' % (ident,) in text


def test_blocked_report_hub_and_limit():
    with blocked_hub('event') as (ident, blocked):
        hub = blocked.parent
        lines = report.format_blocked_report(
            greenlet=blocked, thread_ident=ident, duration=1.5,
            threshold=0.1, hub=hub, limit=1)
    [hub_line] = [line for line in lines if line.startswith('    Hub: ')]
    assert "<Hub '' at %s" % (hex(id(hub)),) in hub_line
    info = lines.index('Info:')
    stack = lines[lines.index('Blocked Stack (for thread id 0x%x):' % ident)
                  + 1:info]
    # limit=1: only the newest frame (Event.wait's innermost frame).
    assert len([line for line in stack if line.startswith('  File ')]) == 1


def test_blocked_report_unknown_thread():
    lines = report.format_blocked_report(
        greenlet=greenlet.getcurrent(), thread_ident=0x1234, duration=1.0,
        threshold=0.5)
    assert 'Blocked Stack (for thread id 0x1234):' in lines
    assert any('no Python frame' in line for line in lines)
    assert 'Info:' in lines


def test_blocked_report_bad_greenlet():
    def run():
        greenlet.getcurrent().parent.switch()

    bad = BadRepr(run)
    bad.switch()
    lines = report.format_blocked_report(
        greenlet=bad, thread_ident=threading.get_ident(), duration=2.0,
        threshold=1.0)
    unreprable = '<unreprable greenlet at 0x%x (repr raised' % (id(bad),)
    assert unreprable in lines[1]
    assert lines[1].endswith(
        ' appears to be blocked for 2.000 seconds (max_blocking_time 1.000 seconds)')
    assert any(unreprable in line and '<== BLOCKED' in line
               for line in lines)
    assert not any(line.startswith('!!!') for line in lines)


# ---------------------------------------------------------------------------
# The run info: threads
# ---------------------------------------------------------------------------

def test_threads_listed_with_names_and_stacks():
    with waiting_thread() as thread:
        lines = report.format_run_info()
    me = threading.get_ident()
    assert lines[:3] == ['*' * 80, '* Threads', '*' * 80]
    assert 'Thread 0x%x (MainThread) daemon=False (CURRENT)' % (me,) in lines
    label = 'Thread 0x%x (report-worker-thread) daemon=True' % (thread.ident,)
    assert label in lines
    # The worker's stack follows its label, oldest frame first.
    start = lines.index(label) + 1
    stack = []
    for line in lines[start:]:
        if not line.startswith('  '):
            break
        stack.append(line)
    assert '  File "%s", line %d, in worker_function' % (
        HERE, _line_of('WORKER-WAIT')) in stack
    assert stack[0].endswith('in _bootstrap')
    # The calling thread's stack starts at the caller, not in the report.
    own = lines[lines.index(
        'Thread 0x%x (MainThread) daemon=False (CURRENT)' % (me,)) + 1:]
    own_stack = []
    for line in own:
        if not line.startswith('  '):
            break
        own_stack.append(line)
    assert 'in test_threads_listed_with_names_and_stacks' in own_stack[-2]
    assert not any(os.sep + os.path.join('hubmon', 'report.py"') in line
                   for line in own_stack)


def test_thread_stacks_off_and_limit():
    with waiting_thread() as thread:
        without = report.format_run_info(thread_stacks=False)
        limited = report.format_run_info(limit=1)
        oldest = report.format_run_info(limit=-1)
    label = 'Thread 0x%x (report-worker-thread) daemon=True' % (thread.ident,)
    i = without.index(label)
    assert not without[i + 1].startswith('  File')
    i = limited.index(label)
    assert limited[i + 1].startswith('  File "%s"' % (
        threading.__file__,))  # Event.wait -> Condition.wait is newest
    assert not limited[i + 3].startswith('  File')
    i = oldest.index(label)
    assert oldest[i + 1].endswith('in _bootstrap')
    assert not oldest[i + 3].startswith('  File')


def test_exclude_thread_ids():
    me = threading.get_ident()
    with waiting_thread() as thread:
        lines = report.format_run_info(exclude_thread_ids=[thread.ident])
        both = report.format_run_info(exclude_thread_ids={thread.ident, me})
    assert not any(line.startswith('Thread 0x%x' % (thread.ident,))
                   for line in lines)
    assert any(line.startswith('Thread 0x%x' % (me,)) for line in lines)
    assert '(1 thread excluded from this report)' in lines
    assert not any(line.startswith('Thread 0x%x' % (me,)) for line in both)
    assert '(2 threads excluded from this report)' in both


def test_current_thread_ident_moves_the_current_mark():
    me = threading.get_ident()
    with waiting_thread() as thread:
        lines = report.format_run_info(current_thread_ident=thread.ident)
    # The calling thread is still listed, without the mark.
    assert 'Thread 0x%x (MainThread) daemon=False' % (me,) in lines
    assert 'Thread 0x%x (report-worker-thread) daemon=True (CURRENT)' % (
        thread.ident,) in lines


# ---------------------------------------------------------------------------
# The run info: greenlets
# ---------------------------------------------------------------------------

def test_raw_greenlet_tree():
    main = greenlet.getcurrent()

    def child_run():
        main.switch()  # CHILD-SUSPENDED

    def parent_run():
        child = Named(child_run, 'child')
        child.switch()
        main.switch()

    parent = Named(parent_run, 'parent')
    parent.switch()
    unstarted = Named(child_run, 'unstarted')
    finished = Named(lambda: None, 'finished')
    finished.switch()
    lines = report.format_run_info()
    del unstarted, finished  # alive until the report was made
    nodes = _node_lines(lines)
    [parent_line] = [line for line in nodes if '<Named parent>' in line]
    [child_line] = [line for line in nodes if '<Named child>' in line]
    assert lines.index(child_line) > lines.index(parent_line)
    assert _indent(child_line) == _indent(parent_line) + 4
    # The child's suspended stack is under it.
    i = lines.index(child_line)
    assert lines[i + 1].strip() == 'Stack (suspended):'
    assert lines[i + 2].strip() == 'File "%s", line %d, in child_run' % (
        HERE, _line_of('CHILD-SUSPENDED'))
    # The calling thread's main greenlet is marked current.
    [current] = [line for line in nodes if 'CURRENT' in line]
    assert repr(main) in current
    assert _indent(current) < _indent(parent_line)
    assert any('<Named unstarted> (not started)' in line for line in nodes)
    # Dead greenlets still referenced are reported as such.
    assert any('<Named finished> (dead)' in line for line in nodes)
    i = lines.index([line for line in nodes if 'unstarted' in line][0])
    assert 'Not started; will run' in lines[i + 1]
    assert 'child_run' in lines[i + 1]


def test_gevent_greenlet_details():
    assert gevent.config.track_greenlet_tree  # the default

    def gevent_worker():
        gevent.sleep(100000)  # GEVENT-WORKER-SLEEP

    worker = gevent.spawn(gevent_worker)  # SPAWN-LINE
    worker.name = 'my-worker-greenlet'
    worker.spawn_tree_locals['request_id'] = 'req-42'
    try:
        _wait_started([worker])
        lines = report.format_run_info(max_greenlets=0)
    finally:
        worker.kill()
    [node] = [line for line in _node_lines(lines)
              if 'my-worker-greenlet' in line]
    i = lines.index(node)
    details = []
    for line in lines[i + 1:]:
        if _indent(line) <= _indent(node):
            break
        details.append(line.strip())
    assert 'Stack (suspended):' in details
    assert 'File "%s", line %d, in gevent_worker' % (
        HERE, _line_of('GEVENT-WORKER-SLEEP')) in details
    spawned = details.index('Spawned at:')
    assert 'File "%s", line %d, in test_gevent_greenlet_details' % (
        HERE, _line_of('SPAWN-LINE')) in details[spawned:]
    assert "Spawn tree locals: {'request_id': 'req-42'}" in details
    # A gevent greenlet is a child of its hub in the tree by parent.
    [hub_line] = [line for line in _node_lines(lines)
                  if "<Hub '' at %s " % (hex(id(worker.parent)),) in line]
    assert _indent(node) == _indent(hub_line) + 4


def test_gevent_unnamed_greenlet_gets_name_line():
    worker = gevent.spawn(sleeper)
    try:
        _wait_started([worker])
        lines = report.format_run_info(greenlet_stacks=False)
    finally:
        worker.kill()
    # gevent's repr shows the name once it has been asked for.
    assert any(('"%s"' % (worker.name,)) in line and 'sleeper' in line
               for line in _node_lines(lines))
    assert not any(line.strip() == 'Stack (suspended):' for line in lines)


def test_max_greenlets_summarises():
    with sleeping_greenlets(2000) as greenlets:
        lines = report.format_run_info(max_greenlets=20)
        full = report.format_run_info(max_greenlets=0)
    total = int(re.search(r'\* Greenlets \(([\d,]+) live\)', '\n'.join(
        lines)).group(1).replace(',', ''))
    assert total >= 2000
    nodes = _node_lines(lines)
    assert len(nodes) <= 22
    summary = [line for line in lines if line.startswith('... and ')]
    assert summary == ['... and %s more greenlets, by what they run:' % (
        format(total - len(nodes), ','),)]
    shown_sleepers = sum(1 for line in nodes if ': sleeper>' in line)
    group = [line for line in lines
             if 'in sleep (gevent/hub.py:' in line
             and re.search(r', spawned to run ([\w.]+\.)?sleeper$', line)]
    assert len(group) == 1
    assert group[0].startswith('    %s in sleep' % (
        format(2000 - shown_sleepers, ','),))
    # The hub says how many of its children are not shown.
    assert any('Children: ' in line and 'not shown' in line for line in lines)
    # The full tree shows every greenlet and no summary.
    full_nodes = _node_lines(full)
    assert not any(line.startswith('... and ') for line in full)
    text = '\n'.join(full_nodes)
    for g in greenlets:
        assert hex(id(g)) in text
    full_total = int(re.search(r'\* Greenlets \(([\d,]+) live\)', '\n'.join(
        full)).group(1).replace(',', ''))
    assert len(full_nodes) == full_total


def test_bounded_report_is_bounded_with_10000_greenlets():
    with sleeping_greenlets(1000):
        small_blocked = report.format_blocked_report(
            greenlet=greenlet.getcurrent(),
            thread_ident=threading.get_ident(), duration=1, threshold=0.5)
    with sleeping_greenlets(10000):
        lines = report.format_run_info(max_greenlets=10, limit=2)
        blocked = report.format_blocked_report(
            greenlet=greenlet.getcurrent(),
            thread_ident=threading.get_ident(), duration=1, threshold=0.5)
    assert len(lines) < 200
    assert any(line.startswith('... and ') for line in lines)
    # The default blocked report does not grow with the number of greenlets.
    assert abs(len(blocked) - len(small_blocked)) < 10


def test_highlight_path_always_shown():
    with sleeping_greenlets(300) as greenlets:
        target = greenlets[-1]
        lines = report.format_run_info(max_greenlets=1, highlight=target)
    nodes = _node_lines(lines)
    # The path root -> hub -> target is shown even beyond max_greenlets.
    assert len(nodes) == 3
    assert repr(target) in nodes[2] and '<== BLOCKED' in nodes[2]
    assert "+-- <Hub '' at %s " % (hex(id(target.parent)),) in nodes[1]


def test_greenlets_with_raising_repr_and_name():
    def run():
        greenlet.getcurrent().parent.switch()

    bad = BadRepr(run)
    bad.switch()
    bad_gevent = BadGevent(sleeper)
    bad_gevent.start()
    try:
        _wait_started([bad_gevent])
        lines = report.format_run_info()
        bounded = report.format_run_info(max_greenlets=1)
    finally:
        bad_gevent.kill()
    text = '\n'.join(lines)
    assert '<unreprable greenlet at 0x%x (repr raised' % (id(bad),) in text
    assert '<unreprable greenlet at 0x%x (repr raised' % (id(bad_gevent),) in text
    assert not any(line.startswith('!!!') for line in lines + bounded)
    assert any(line.startswith('... and ') for line in bounded)


def test_print_run_info():
    out = io.StringIO()
    assert report.print_run_info(file=out, max_greenlets=5) is None
    text = out.getvalue()
    assert text.startswith('*' * 80 + '\n* Threads\n')
    assert text.endswith('\n')
    assert '* Greenlets (' in text


def test_report_from_another_thread_does_not_touch_its_greenlets():
    # A monitor excludes its own thread; the report must not create greenlet
    # state there (greenlet.getcurrent() would). The report knows the thread
    # of a root greenlet through the gevent hub above it: make sure this
    # thread has one whatever ran before in this process (any test order).
    pytest.importorskip("gevent").get_hub()
    result = {}

    def monitor():
        me = threading.get_ident()
        result['lines'] = report.format_run_info(exclude_thread_ids=[me],
                                                 max_greenlets=3)
        result['me'] = me

    thread = threading.Thread(target=monitor)
    thread.start()
    thread.join(60)
    lines = result['lines']
    assert not any(line.startswith('Thread 0x%x' % (result['me'],))
                   for line in lines)
    assert not any('CURRENT greenlet' in line for line in lines)
    assert any('[main greenlet of thread 0x%x]' % (threading.get_ident(),)
               in line for line in lines)


# ---------------------------------------------------------------------------
# Fresh interpreters
# ---------------------------------------------------------------------------

def test_plain_greenlets_without_gevent(python):
    result = python('''
        import sys, threading
        import greenlet
        import hubmon.report as report
        assert 'gevent' not in sys.modules

        main = greenlet.getcurrent()

        class Named(greenlet.greenlet):
            def __init__(self, run, label):
                super().__init__(run)
                self.label = label
            def __repr__(self):
                return '<Named %s>' % self.label

        def child_run():
            main.switch()

        def parent_run():
            child = Named(child_run, 'child')
            child.switch()
            main.switch()

        parent = Named(parent_run, 'parent')
        parent.switch()
        lines = report.format_run_info()
        blocked = report.format_blocked_report(
            greenlet=parent, thread_ident=threading.get_ident(),
            duration=0.25, threshold=0.125, max_greenlets=1)
        print('\\n'.join(lines))
        print('=== blocked')
        print('\\n'.join(blocked))
        assert 'gevent' not in sys.modules
        print('OK-NO-GEVENT')
    ''')
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''
    out = result.stdout
    assert out.rstrip().endswith('OK-NO-GEVENT')
    run_info, blocked = out.split('=== blocked\n')
    lines = run_info.splitlines()
    [parent] = [line for line in lines if '+-- <Named parent>' in line]
    [child] = [line for line in lines if '+-- <Named child>' in line]
    assert lines.index(child) > lines.index(parent)
    assert _indent(child) == _indent(parent) + 4
    assert 'Thread 0x' in run_info and '(MainThread)' in run_info
    assert ('Greenlet <Named parent> appears to be blocked for 0.250 seconds'
            ' (max_blocking_time 0.125 seconds)') in blocked
    assert '<Named parent> <== BLOCKED' in blocked
    assert '... and 1 more greenlets, by what they run:' in blocked
    assert '    1 in child_run (scenario.py:' in blocked


def test_names_under_monkey_patching(python):
    result = python('''
        from gevent import monkey
        monkey.patch_all()
        import threading
        import gevent
        from hubmon import report
        me = monkey.get_original('_thread', 'get_ident')()
        green = threading.Thread(target=gevent.sleep, args=(100,),
                                 name='green-thread', daemon=True)
        green.start()
        gevent.sleep(0.01)
        lines = report.format_run_info()
        print('\\n'.join(lines))
        print('ME 0x%x' % me)
    ''')
    assert result.returncode == 0, result.stderr
    me = result.stdout.strip().splitlines()[-1].split()[1]
    assert 'Thread %s (MainThread) daemon=False (CURRENT)' % (me,) in (
        result.stdout)
    # A "thread" of the patched threading module is a greenlet.
    assert 'green-thread' in result.stdout


# ---------------------------------------------------------------------------
# gevent.local values and spawn tree locals, as gevent's format_run_info
# ---------------------------------------------------------------------------

class Unreprable:
    def __repr__(self):
        raise RuntimeError('no repr for this value')


class RequestLocal(gevent.local.local):
    """A subclass of gevent.local.local, named in the report."""


def _details(lines, node):
    """The lines under the label *node*, up to the next node at its level."""
    out = []
    for line in lines[lines.index(node) + 1:]:
        if _indent(line) <= _indent(node):
            break
        out.append(line.strip())
    return out


def test_greenlet_locals_in_run_info():
    plain = gevent.local.local()
    request = RequestLocal()
    ready = gevent.event.Event()

    def with_locals():
        plain.request_id = 'req-42'
        request.user = 'alice'
        request.bad = Unreprable()
        ready.set()
        gevent.sleep(100000)

    worker = gevent.spawn(with_locals)
    other = gevent.spawn(sleeper)
    try:
        _wait_started([worker, other])
        ready.wait(30)
        lines = report.format_run_info(max_greenlets=0)
    finally:
        gevent.killall([worker, other])
    [node] = [line for line in _node_lines(lines)
              if hex(id(worker)) in line]
    details = _details(lines, node)
    assert 'Greenlet Locals:' in details
    assert ("Local gevent.local.local at 0x%x: {'request_id': 'req-42'}"
            % (id(plain),)) in details
    [mine] = [line for line in details
              if line.startswith('Local %s.RequestLocal at 0x%x: ' % (
                  __name__, id(request)))]
    assert "'user': 'alice'" in mine
    assert "'bad': <unreprable" in mine and 'no repr for this value' in mine
    # A greenlet that set none of them shows none.
    [node] = [line for line in _node_lines(lines) if hex(id(other)) in line]
    assert not any('Local' in line for line in _details(lines, node))
    assert not any(line.startswith('!!!') for line in lines)


def test_spawn_tree_locals_shown_where_they_differ_from_the_spawner():
    children = []

    def spawner():
        gevent.getcurrent().spawn_tree_locals['request_id'] = 'req-7'
        children.append(gevent.spawn(sleeper))
        gevent.sleep(100000)

    parent = gevent.spawn(spawner)
    try:
        _wait_started([parent])
        _wait_started(children)
        [child] = children
        assert child.spawn_tree_locals is parent.spawn_tree_locals
        full = report.format_run_info(max_greenlets=0)
        bounded = report.format_run_info(max_greenlets=1, highlight=child)
    finally:
        gevent.killall([parent] + children)
    nodes = _node_lines(full)
    [parent_node] = [line for line in nodes if hex(id(parent)) in line]
    [child_node] = [line for line in nodes if hex(id(child)) in line]
    assert ("Spawn tree locals: {'request_id': 'req-7'}"
            in _details(full, parent_node))
    # Shared with its spawner, which is shown: pointed to, not repeated.
    child_details = _details(full, child_node)
    assert ("Spawn tree locals: its spawner's, the greenlet at 0x%x"
            % (id(parent),)) in child_details
    assert not any('req-7' in line for line in child_details)
    # The spawner not shown: the child shows them.
    [child_node] = [line for line in _node_lines(bounded)
                    if hex(id(child)) in line]
    assert ("Spawn tree locals: {'request_id': 'req-7'}"
            in _details(bounded, child_node))


def test_monitor_report_shows_greenlet_locals(python):
    proc = python('''
        import hubmon, gevent, gevent.local, time
        request = gevent.local.local()
        def handler():
            request.request_id = 'req-42'
            gevent.getcurrent().spawn_tree_locals['tenant'] = 'acme'
            time.sleep(0.3)
            print('\\n'.join(hubmon.format_run_info()))
        gevent.spawn(handler).join()
        print('LOCAL 0x%x' % id(request))
    ''', env={'GEVENT_MONITOR_THREAD_ENABLE': 'true',
              'GEVENT_MAX_BLOCKING_TIME': '0.1'})
    assert proc.returncode == 0, proc.stderr
    local_id = proc.stdout.split('LOCAL ')[1].split()[0]
    expected = "Local gevent.local.local at %s: {'request_id': 'req-42'}" % (
        local_id,)
    for lines in (proc.stderr.splitlines(), proc.stdout.splitlines()):
        [node] = [line for line in _node_lines(lines) if 'handler' in line]
        details = _details(lines, node)
        assert 'Greenlet Locals:' in details, '\n'.join(lines)
        assert expected in details
        assert "Spawn tree locals: {'tenant': 'acme'}" in details
    [node] = [line for line in _node_lines(proc.stderr.splitlines())
              if '<== BLOCKED' in line]
    assert 'handler' in node


# ---------------------------------------------------------------------------
# A culprit without a Python frame; a culprit with greenlet's own repr
# ---------------------------------------------------------------------------

def test_frameless_culprit_in_a_live_thread_is_named():
    state = {}
    started = threading.Event()

    def hub_thread():
        state['greenlet'] = gevent.spawn(time.sleep, 0.5)
        started.set()
        state['greenlet'].join()
        gevent.get_hub().destroy(destroy_loop=True)

    thread = threading.Thread(target=hub_thread, name='frameless-hub-thread',
                              daemon=True)
    thread.start()
    assert started.wait(30)
    culprit = state['greenlet']
    deadline = time.monotonic() + 30
    # Running, and the thread runs no Python frame: inside time.sleep.
    while not culprit or thread.ident in sys._current_frames():
        assert time.monotonic() < deadline, 'the greenlet did not start'
        time.sleep(0.001)
    lines = report.format_blocked_report(
        greenlet=culprit, thread_ident=thread.ident, duration=0.2,
        threshold=0.1)
    thread.join(30)
    stack = lines[lines.index('Blocked Stack (for thread id 0x%x):' % (
        thread.ident,)) + 1:lines.index('Info:')]
    assert stack == [('  No Python frame: the blocked greenlet runs'
                      ' time.sleep(0.5) (its _run), which is not Python'
                      ' code')]
    assert not any('may have exited' in line for line in lines)
    # The thread is listed, though it has no frame.
    label = 'Thread 0x%x (frameless-hub-thread) daemon=True (CURRENT)' % (
        thread.ident,)
    assert lines[lines.index(label) + 1] == (
        '  (no Python frame is running in this thread)')
    [node] = [line for line in _node_lines(lines) if '<== BLOCKED' in line]
    assert lines[lines.index(node) + 1].strip() == (
        'Stack: none, it runs time.sleep(0.5) (its _run), which is not'
        ' Python code')
    # Once the thread has exited, it is said so.
    gone = report.format_blocked_report(
        greenlet=culprit, thread_ident=thread.ident, duration=0.2,
        threshold=0.1)
    assert any('it may have exited' in line for line in gone)


def test_dropin_report_names_a_c_function_culprit(python):
    proc = python('''
        import hubmon, gevent, time
        gevent.spawn(time.sleep, 0.3).join()
    ''', env={'GEVENT_MONITOR_THREAD_ENABLE': 'true',
              'GEVENT_MAX_BLOCKING_TIME': '0.1'})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    [header] = [line for line in lines if line.startswith('Blocked Stack')]
    assert lines[lines.index(header) + 1] == (
        '  No Python frame: the blocked greenlet runs time.sleep(0.3) (its'
        ' _run), which is not Python code'), proc.stderr
    assert 'may have exited' not in proc.stderr
    assert any(line.startswith('Thread 0x') and '(MainThread)' in line
               and '(CURRENT)' in line for line in lines), proc.stderr


def test_raw_greenlet_culprit_is_not_called_suspended(python):
    proc = python('''
        import hubmon, greenlet, time

        class GreenThread(greenlet.greenlet):
            """Like eventlet's: greenlet's own repr."""

        def spin():
            end = time.perf_counter() + 0.4
            while time.perf_counter() < end:
                pass

        main = greenlet.getcurrent()

        def hub_loop():
            while True:
                main.switch()

        hub = greenlet.greenlet(hub_loop)
        monitor = hubmon.start(hub, max_blocking_time=0.1)
        for kind in (greenlet.greenlet, GreenThread):
            culprit = kind(run=spin)
            print('CULPRIT 0x%x' % id(culprit))
            culprit.switch()
            hub.switch()        # the blockage ends in the hub
        time.sleep(0.2)         # the reports are printed
        monitor.stop()
    ''', env={'HUBMON_REPEAT_WINDOW': '0'})   # the same place twice: two full reports
    assert proc.returncode == 0, proc.stderr
    culprits = [line.split()[1] for line in proc.stdout.splitlines()
                if line.startswith('CULPRIT ')]
    reports = [r for r in proc.stderr.split('=' * 80)
               if 'appears to be blocked' in r]
    for culprit, kind in zip(culprits, ('greenlet.greenlet', 'GreenThread')):
        [text] = [r for r in reports
                  if r.strip('\n').splitlines()[0].count(culprit) == 1]
        lines = text.strip('\n').splitlines()
        header = lines[0]
        assert ' : Greenlet <%s object at %s (otid=' % (kind, culprit) in (
            header), text
        assert ') running active started> appears to be blocked' in header
        assert 'suspended' not in header
        [node] = [line for line in _node_lines(lines) if '<== BLOCKED' in line]
        assert culprit in node and 'suspended' not in node
        assert 'in spin' in text
