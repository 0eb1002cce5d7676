"""pytest plugin: in CI (``SITSMON_NO_SKIPS=1``) a skipped test fails the run.

A test that skips because a service is missing proves nothing, so the suite never counts it as a
pass. The one exception is a test marked ``requires_cuda`` on a machine without CUDA: no service can fix that.
"""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("SITSMON_NO_SKIPS") != "1" or not report.skipped:
        return
    if item.get_closest_marker("requires_cuda") is not None:
        return
    if hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped tests are failures in CI (SITSMON_NO_SKIPS=1): {reason}"
