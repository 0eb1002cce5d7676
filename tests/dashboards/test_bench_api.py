"""`sitsmon bench api` end to end at a tiny size: the server answers every request (no timing asserted)."""

from __future__ import annotations

import json

from sitsmon.cli import main


def test_bench_api_small(tmp_path, capsys):
    args = ["bench", "api", "--data-dir", str(tmp_path / "b"), "--parcels", "30", "--parcels-per-tile", "12", "--years", "0.3",
            "--alerts", "200", "--requests", "8", "--concurrency", "2", "--sustain-s", "0.5"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["rows_per_parcel"] == len(range(0, 109, 5)) + len(range(2, 109, 6))
    assert out["tiles"] == 3 and out["series_rows"] == 30 * out["rows_per_parcel"]  # 12 + 12 + 6 parcels
    from ingest.series import read_series

    stored = read_series(tmp_path / "b" / "series")  # every tile's compacted file, in the store's own reader
    assert stored.num_rows == out["series_rows"] and stored["parcel_id"].unique().to_pylist() == sorted(
        f"{t}-{k:07d}" for t, n in (("33UXP", 12), ("33TAA", 12), ("33TAB", 6)) for k in range(n))
    for name in ("series", "alerts_page_offset", "chip"):
        assert out[name]["n"] == 8 and out[name]["errors"] == 0
        assert 0 < out[name]["p50_ms"] <= out[name]["p95_ms"] <= out[name]["p99_ms"]
        assert out[name]["server_cpu_ms"] >= 0
    assert out["alerts_page"]["n"] >= 1 and out["alerts_page"]["errors"] == 0  # walked by next_cursor
    assert out["sustained"]["requests"] > 0 and out["sustained"]["errors"] == 0
    budgets = out["budgets"]
    assert set(budgets) == {"series_p95_ms", "alerts_page_p95_ms", "chip_p95_ms", "sustained_requests_per_s"}
    for name, b in budgets.items():
        assert b["pass"] is (b["measured"] <= b["budget"] if name.endswith("_ms") else b["measured"] >= b["budget"])
    assert budgets["series_p95_ms"]["ratio_to_health_p95"] == round(
        out["series"]["p95_ms"] / out["floor_http_health"]["p95_ms"], 2)
