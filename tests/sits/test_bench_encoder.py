"""`sitsmon bench encoder` runs and reports every section (no timing assertions)."""

from __future__ import annotations

import argparse
import json

from sitsmon.commands import bench_encoder
from sitsmon.settings import get_settings


def test_bench_encoder_reports_all_sections(capsys):
    parser = argparse.ArgumentParser(prog="sitsmon bench")
    sub = parser.add_subparsers(dest="what", required=True)
    bench_encoder.register(sub)
    args = parser.parse_args(["encoder", "--quick", "--sizes", "16x2", "--pixels", "300", "--parcels", "3",
                              "--lengths", "12", "--bandwidth-mb", "8", "--repeats", "1", "--threads", "1",
                              "--layers", "1", "--update-rows", "40", "--omp-wait-policy", "inherit"])
    assert args.handler(args, get_settings()) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bandwidth_floor"]["numpy_single_thread_gbps"] > 0 and result["matmul_floor"]["gflops"] > 0
    (entry,) = result["update_cost"]
    assert entry["state_step"]["state_bytes_per_pixel"] == 2 * 8 * 8 * 4
    assert entry["layer"]["us_per_pixel"] > 0 and entry["model"]["us_per_pixel"] > 0
    # every number beside its floor from the same interleaved rounds
    assert entry["state_step"]["ratio_to_floor"] > 0 and entry["layer"]["ratio_to_floor"] > 0
    assert entry["state_step"]["floor_us_per_pixel"] == entry["bandwidth_floor_same_run"]["us_per_pixel"]
    assert entry["layer"]["floor_us_per_pixel"] > entry["layer"]["matmul_floor_us_per_pixel"] > 0
    (row,) = result["versus_transformer"]["by_length"]
    assert row["T"] == 12 and row["speedup"] > 0 and row["end_to_end"]["speedup"] > 0
    assert row["speedup_inplace"] > 0 and row["speedup_double_buffered"] > 0
    assert entry["model"]["us_per_pixel_double_buffered"] > 0
    assert result["versus_transformer"]["update_rows_per_call"] == 40
    assert row["parallel_vs_recurrent_max_abs_diff"] < 1e-3
    assert result["state_bytes_per_pixel"]["16x2"]["per_layer"] == 512
    assert "available" in result["gpu"] or result["gpu"]["runs"]
    assert not any("T200" in name for name in result["budgets"])  # T = 200 was not run


def test_interleaved_rounds_and_paired_ratio():
    from sits.bench import interleaved, paired_ratio

    order = []
    res = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=1)
    assert order == ["a", "b"] * 4  # warm-up round, then a, b, a, b, … (a noisy neighbour hits both alike)
    assert len(res["a"]["times"]) == len(res["b"]["cpu"]) == 3
    assert paired_ratio([2.0, 10.0, 3.0], [1.0, 5.0, 1.0]) == 2.0
