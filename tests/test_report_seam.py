"""Tests of the seam of the reports: facts collected once, rendered later.

hubmon.report is ``_render(_collect(...))``: the facts are taken from the
live interpreter at one moment, and the text made from them shows that
moment, whatever the program does before it is rendered. Real threads,
real gevent; no mocks.
"""

import json
import os
import re
import sys
import threading
import time

import gevent
import gevent.event
import gevent.local
import greenlet

from conftest import line_of

from hubmon import _collect, _render, report

HERE = os.path.abspath(__file__)


def _line_of(marker):
    """The line number in this file of the line ending with ``# <marker>``."""
    return line_of(HERE, marker)


def _wait_for_line(ident, line, timeout=30):
    """Wait until thread *ident* runs the line *line* of this file."""
    deadline = time.monotonic() + timeout
    while True:
        frame = sys._current_frames().get(ident)
        while frame is not None:
            if frame.f_code.co_filename == HERE and frame.f_lineno == line:
                return
            frame = frame.f_back
        frame = None
        assert time.monotonic() < deadline, 'thread did not reach the line'
        time.sleep(0.001)


def _is_plain(value):
    """Tell whether *value* is made of JSON's kinds of values only."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(map(_is_plain, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


class Mutable:
    """A value whose repr tells its state."""

    def __init__(self):
        self.state = 'before'

    def __repr__(self):
        return '<Mutable %s>' % (self.state,)


def _one_call_site(build, **kwargs):
    """Call *build*: both reports show the calling thread's stack the same."""
    return build(**kwargs)


def test_rendered_collection_is_the_run_info_report():
    local = gevent.local.local()
    release = gevent.event.Event()

    def waiter(i):
        local.value = Mutable()
        release.wait()

    greenlets = [gevent.spawn(waiter, i) for i in range(30)]
    greenlets[3].name = 'the-named-one'
    later = gevent.spawn_later(1000, waiter, -1)
    gevent.sleep(0)
    try:
        for max_greenlets in (None, 5):
            for limit in (None, 1, -1):
                # One list of greenlets for both: the order of the garbage
                # collector's list changes as it runs.
                found = report.find_greenlets()
                facade, seam = (_one_call_site(
                    build, limit=limit, max_greenlets=max_greenlets,
                    highlight=greenlets[7], **{name: found})
                    for build, name in (
                        (report.format_run_info, '_greenlets'),
                        (_collect.collect_run_info, 'greenlets')))
                assert _render.render_run_info(seam) == facade
        assert any('Greenlet Locals:' in line for line in facade)
        assert any('by what they run' in line for line in facade)
    finally:
        later.kill()
        release.set()
        gevent.joinall(greenlets)


def test_blocked_report_renders_the_state_when_collected():
    local = gevent.local.local()
    value = Mutable()
    release = gevent.event.Event()
    collected = {}
    me = threading.get_ident()

    def waiter():
        local.thing = value
        release.wait()  # WAITER-WAIT

    def collect(culprit):
        _wait_for_line(me, _line_of('CULPRIT-BLOCKS'))
        collected['facts'] = _collect.collect_blocked_report(
            greenlet=culprit, thread_ident=me, duration=1.25, threshold=0.5,
            hub=gevent.get_hub(), max_greenlets=None,
            exclude_thread_ids=[threading.get_ident()],
            monitor_repr='<the monitor>')

    def culprit_run():
        thread = threading.Thread(target=collect,
                                  args=(greenlet.getcurrent(),))
        thread.start()
        thread.join()  # CULPRIT-BLOCKS

    waiting = gevent.spawn(waiter)
    waiting.name = 'the-waiter'
    gevent.sleep(0)
    culprit = gevent.spawn(culprit_run)
    culprit.join()
    facts = collected['facts']

    # The program goes on: the value changes, the greenlets end.
    value.state = 'after'
    release.set()
    waiting.join()
    assert waiting.dead and culprit.dead

    lines = _render.render_blocked_report(facts)
    text = '\n'.join(lines)
    assert re.match(r'\d{4}-\d\d-\d\dT[\d:.]+Z : Greenlet ', lines[1])
    assert 'appears to be blocked for 1.250 seconds' in lines[1]
    assert '    Reported by <the monitor>' in lines
    blocked_stack = text.split('Blocked Stack')[1].split('Info:')[0]
    assert 'line %d, in culprit_run' % (_line_of('CULPRIT-BLOCKS'),) in (
        blocked_stack)
    # The repr of the value is the one it had when the facts were taken.
    assert '<Mutable before>' in text
    assert '<Mutable after>' not in text
    # The greenlets that have ended since are shown as they were.
    [waiter_label] = [line for line in lines
                      if '+-- ' in line and 'the-waiter' in line]
    assert '(dead)' not in waiter_label
    after = lines[lines.index(waiter_label) + 1:]
    assert after[0].strip() == 'Stack (suspended):'
    assert any('line %d, in waiter' % (_line_of('WAITER-WAIT'),) in line
               for line in after[:40])
    [culprit_label] = [line for line in lines if '<== BLOCKED' in line]
    assert '(dead)' not in culprit_label

    # The facts hold plain values only: a JSON renderer can take them as
    # they are.
    plain = facts.to_dict()
    assert _is_plain(plain)
    json.dumps(plain)
    assert plain['culprit_identity'] == id(culprit)
    kinds = {g['state'] for g in plain['run_info']['greenlets']['greenlets']}
    assert 'suspended' in kinds
    # Rendering again gives the same text, timestamp included.
    assert _render.render_blocked_report(facts) == lines


def test_report_frames_are_not_in_the_callers_stack():
    lines = report.format_run_info()
    me = threading.get_ident()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith('Thread 0x%x' % (me,)))
    stack = []
    for line in lines[start + 1:]:
        if not line.startswith('  '):
            break
        stack.append(line)
    assert 'in test_report_frames_are_not_in_the_callers_stack' in stack[-2]
    for name in ('report.py"', '_collect.py"', '_render.py"'):
        assert not any(os.sep + 'hubmon' + os.sep + name in line
                       for line in stack), name


def test_find_greenlet_is_public():
    sleeping = gevent.spawn(gevent.sleep, 1000)
    gevent.sleep(0)
    try:
        found = report.find_greenlets()
        assert any(g is sleeping for g in found)
        assert report.find_greenlet(id(sleeping)) is sleeping
        assert report.find_greenlet(id(sleeping), found) is sleeping
        assert report.find_greenlet(0) is None
        assert report.find_greenlet(id(object()), found) is None
    finally:
        sleeping.kill()
