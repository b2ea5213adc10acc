"""Shared fixtures: running a snippet in a fresh interpreter."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from typing import Dict, Optional

import pytest

pytest_plugins = ["pytester"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, *, env: Optional[Dict[str, str]] = None, timeout: float = 60,
               args: tuple = ()) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; return the finished process (text output).

    The code is written to a file first, so reports show its source lines.
    """
    full_env = dict(os.environ)
    full_env.pop("GEVENT_MONITOR_THREAD_ENABLE", None)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env["PYTHONFAULTHANDLER"] = "1"
    if env:
        full_env.update(env)
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "scenario.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent(code))
        return subprocess.run([sys.executable, script, *args], env=full_env, cwd=folder,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def python():
    """The :func:`run_python` helper, as a fixture."""
    return run_python
