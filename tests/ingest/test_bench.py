"""`sitsmon bench ingest` runs end to end on a tiny workload and prints the documented JSON (no timing asserted)."""

from __future__ import annotations

import json

from sitsmon.cli import main


def test_bench_ingest_json(tmp_path, capsys):
    assert main(["bench", "ingest", "--size", "128", "--chunk", "64", "--workdir", str(tmp_path / "w"), "--keep"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["workload"]["tile_px"] == 128 and out["workload"]["assets"] == 11
    for key in ("mpix_s", "read_mpix_s", "mask_mpix_s", "write_mpix_s"):
        assert out["pipeline"][key] > 0
    assert out["floor"]["mpix_s"] > 0 and out["ratio_to_floor"] > 0
    assert out["memory_mb"]["pipeline_peak_rss"] > 0
    assert out["zonal"]["equal_to_reference"] is True
    # the pipeline and the floor wrote the same pixels
    import zarr

    cube = zarr.open_group(str(tmp_path / "w" / "pipeline" / "cubes" / "33UXP.zarr"), mode="r")["s2"]["reflectance"]
    floor = zarr.open_group(str(tmp_path / "w" / "floor" / "floor.zarr"), mode="r")["reflectance"]
    dn = floor[0, 0].astype(int)
    assert ((cube[0, 0].astype(int) - dn) == -1000).all()  # stored = DN + offset / scale


def test_bench_refuses_tiny_sizes(capsys):
    assert main(["bench", "ingest", "--size", "8"]) == 1
    assert "--size must be >= 64" in capsys.readouterr().err
