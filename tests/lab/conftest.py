"""The lab of the site-network tests: built once per test module (about 2 s), torn down after.

A lab that cannot be built here (not root, no iproute2) fails its tests with the reason: the
article's network promises are not to be skipped quietly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from plugstream.lab.netns import Host
from plugstream.lab.topology import Lab, lab_unavailable


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    why = lab_unavailable()
    if why is not None:
        pytest.fail(f"the lab cannot run here: {why}")
    with Lab() as built:
        yield built


def python_in(lab: Lab, host: Host, code: str, *args: str, timeout: float = 30.0) -> Any:
    """Run ``code`` with the project's Python in ``host``; what it printed, parsed as JSON."""
    done = lab.exec(host, sys.executable, "-c", code, *args, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def plugstream_in(
    lab: Lab, host: Host, *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``plugstream ARGS`` as a process in ``host``."""
    return lab.exec(host, *lab.plugstream(*args), timeout=timeout)
