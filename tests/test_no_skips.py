"""The CI rule: a skipped test fails the run, except a ``requires_cuda`` test on a machine without CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]

SAMPLE = '''
import pytest

def test_needs_a_service():
    pytest.skip("Kafka broker not reachable")

@pytest.mark.requires_cuda
def test_needs_cuda():
    pytest.skip("requires CUDA")

def test_plain():
    assert True
'''


def _run(tmp_path: Path, no_skips: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    requires_cuda: needs CUDA\n")
    env = {**os.environ, "SITSMON_NO_SKIPS": no_skips, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.no_skips", "-c", str(tmp_path / "pytest.ini"),
         str(tmp_path / "test_sample.py"), "-q", "-p", "no:cacheprovider"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )


def test_skip_for_a_missing_service_fails_in_ci(tmp_path: Path) -> None:
    result = _run(tmp_path, "1")
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed, 1 skipped" in result.stdout
    assert "skipped tests are failures in CI" in result.stdout
    assert "Kafka broker not reachable" in result.stdout


def test_skips_are_plain_skips_outside_ci(tmp_path: Path) -> None:
    result = _run(tmp_path, "0")
    assert result.returncode == 0, result.stdout
    assert "1 passed, 2 skipped" in result.stdout
