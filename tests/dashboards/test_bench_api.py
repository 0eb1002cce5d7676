"""`sitsmon bench api` end to end at a tiny size: the server answers every request (no timing asserted)."""

from __future__ import annotations

import json

from sitsmon.cli import main


def test_bench_api_small(tmp_path, capsys):
    args = ["bench", "api", "--data-dir", str(tmp_path / "b"), "--parcels", "30", "--years", "0.3",
            "--alerts", "200", "--requests", "8", "--concurrency", "2", "--sustain-s", "0.5"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["rows_per_parcel"] == len(range(0, 109, 5)) + len(range(2, 109, 6))
    for name in ("series", "alerts_page", "chip"):
        assert out[name]["n"] == 8 and out[name]["errors"] == 0
        assert 0 < out[name]["p50_ms"] <= out[name]["p95_ms"] <= out[name]["p99_ms"]
    assert out["sustained"]["requests"] > 0 and out["sustained"]["errors"] == 0
