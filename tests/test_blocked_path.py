"""A Monitor and an assert_switches scope report a block through the same path."""
from __future__ import annotations

import re
import sys

import pytest

from conftest import GIL_HOLDING_CALL

pytest.importorskip("gevent")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux timers")

HEADER = re.compile(r"appears to be blocked for ([0-9.]+) seconds")
GIL_LINE = re.compile(r"The GIL was held for ([0-9.]+) seconds before this report could be "
                      r"built: a C call that does not release it was running\. (.*)")


def test_a_block_that_holds_the_gil_reads_the_same_for_a_monitor_and_a_scope(python):
    # One C call that holds the GIL for about 0.8 s, once under a running
    # Monitor and once inside assert_switches: both reports tell the wait
    # for the GIL in the same words, and both headers count it in the
    # duration (the hub was blocked for all of it).
    proc = python("GIL_SECONDS = 0.8\n" + GIL_HOLDING_CALL + """
import io, gevent, hubmon

stream = io.StringIO()
monitor = hubmon.start(max_blocking_time=0.1, stream=stream)
gevent.spawn(crunch).join()
gevent.sleep(0.3)
monitor.stop()
print(stream.getvalue())
print('----- scope -----')
try:
    with hubmon.assert_switches(max_blocking_time=0.1):
        crunch()
except hubmon.FailedToSwitch as failure:
    print('\\n'.join(failure.report))
""", env={"HUBMON_GIL_SIGNAL": "0"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    monitor_report, scope_report = proc.stdout.split("----- scope -----")
    for report in (monitor_report, scope_report):
        gil = GIL_LINE.search(report)
        assert gil is not None, report
        header = HEADER.search(report)
        assert header is not None, report
        assert float(header.group(1)) >= float(gil.group(1)), report
    assert GIL_LINE.search(monitor_report).group(2) == "The stack dump is off (HUBMON_GIL_SIGNAL)."
    assert GIL_LINE.search(scope_report).group(2) == "The stacks below are from after that call."
