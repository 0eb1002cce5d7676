"""scripts/setup.sh picks the torch build explicitly: CPU by default (PyTorch's CPU index when it
answers, the configured index otherwise, never hanging on a silent host), CUDA only when asked."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"


def _args(variant: str, **env: str) -> subprocess.CompletedProcess:
    """The pip arguments setup.sh's torch_pip_args prints for VARIANT (functions sourced, nothing installed)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SITSMON_TORCH")}
    return subprocess.run(["bash", "-c", f'source "{SETUP}" && torch_pip_args {variant}'],
                          env={**clean, **env}, capture_output=True, text=True, timeout=30)


@pytest.fixture
def index_server(tmp_path):
    """A real HTTP server standing in for a reachable wheel index (it serves <root>/torch/)."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "index.html").write_text("<a href='torch-2.13.0+cpu.whl'>torch</a>")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cpu_from_the_cpu_index_when_it_answers(index_server):
    out = _args("cpu", SITSMON_TORCH_CPU_INDEX=index_server)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["--index-url", index_server, "torch==2.13.0+cpu"]


def test_cpu_falls_back_to_the_configured_index_when_unreachable():
    out = _args("cpu", SITSMON_TORCH_CPU_INDEX=f"http://127.0.0.1:{_closed_port()}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["torch==2.13.0"]
    assert "not reachable" in out.stderr


def test_a_silent_index_does_not_hang_the_setup():
    # A host that accepts the connection and never answers (a firewall that drops, a dead proxy):
    # the probe gives up after SITSMON_TORCH_PROBE_S and the configured index is used.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        out = _args("cpu", SITSMON_TORCH_CPU_INDEX=url, SITSMON_TORCH_PROBE_S="1")  # timeout=30 would raise
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["torch==2.13.0"]


def test_cuda_is_an_explicit_choice_of_its_own_index(index_server):
    url = subprocess.run(["bash", "-c", f'source "{SETUP}" && torch_cuda_index'], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("SITSMON_TORCH")}, timeout=30)
    assert url.stdout.strip() == "https://download.pytorch.org/whl/cu128"
    out = _args("cuda", SITSMON_TORCH_INDEX=index_server, SITSMON_TORCH_CUDA="cu126")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["--index-url", index_server, "torch==2.13.0+cu126"]


def test_an_unreachable_cuda_index_is_one_clear_error_not_a_cpu_fallback():
    url = f"http://127.0.0.1:{_closed_port()}"
    out = _args("cuda", SITSMON_TORCH_INDEX=url)
    assert out.returncode == 3 and out.stdout == ""
    assert f"the CUDA wheel index {url} is not reachable" in out.stderr


def test_an_unknown_build_is_refused_before_anything_is_installed():
    out = _args("gpu")
    assert out.returncode == 2 and "SITSMON_TORCH must be cpu or cuda, got 'gpu'" in out.stderr
    # The script itself refuses the flag before it touches apt, the venv or the services.
    run = subprocess.run(["bash", str(SETUP), "--torch", "gpu"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "SITSMON_VENV": "/nonexistent/venv"})
    assert run.returncode == 2 and "got 'gpu'" in run.stderr
    assert not Path("/nonexistent/venv").exists()


def test_every_sitsmon_variable_of_the_script_is_known_to_the_settings_check():
    # sitsmon refuses unknown SITSMON_* variables: a shell that exported SITSMON_TORCH=cuda for the
    # set-up must still run sitsmon.
    import re

    from sitsmon.settings import check_environment

    names = sorted(set(re.findall(r"SITSMON_[A-Z_]+", SETUP.read_text())) - {"SITSMON_SERVICES_DIR"})
    assert "SITSMON_TORCH" in names and "SITSMON_VENV" in names
    check_environment({name: "x" for name in names})  # raises SettingsError naming the first unknown one
