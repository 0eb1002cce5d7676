"""The tile's gap-fill model is fitted once for all server workers and stored next to the series:
two processes asking at once make one fit; the stored model fills exactly as a fresh fit does; a
grown series or a torn file is refitted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd

from dashboards.gapfill_store import MODEL_FILE
from dashboards.series import FIT_PARCELS, SeriesReader

# a server worker in miniature: asks for the tile's model; every real fit leaves a line in fits.log
WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from alerts import gapfill
    from dashboards.series import SeriesReader
    series, tile, log = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    real_fit = gapfill.fit
    def counted_fit(*a, **k):
        with open(log, "a") as f:
            f.write("fit\\n")
        return real_fit(*a, **k)
    gapfill.fit = counted_fit
    reader = SeriesReader(series, with_model=False)
    ids = sys.argv[4].split(",")
    model = reader.gapfill_model(tile, reader._tile_stamp(tile), ids, wait_s=600)
    print(repr(model.sigma))
""")


def _tile_and_ids(series_dir):
    from ingest.series import read_series

    tile = next(p.name for p in series_dir.iterdir() if p.is_dir())
    ids = sorted(set(read_series(series_dir, tile_id=tile).column("parcel_id").to_pylist()))
    return tile, ids


def test_two_workers_make_one_fit_and_the_stored_model_fills_as_a_fresh_fit(site, tmp_path, monkeypatch):
    from alerts import gapfill
    from alerts.series import normalise_observations
    from ingest.series import read_series

    series = tmp_path / "series"
    shutil.copytree(site.data_dir / "series", series, ignore=shutil.ignore_patterns(".gapfill-model*"))
    tile, ids = _tile_and_ids(series)
    log = tmp_path / "fits.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(series), tile, str(log), ",".join(ids)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    assert log.read_text().splitlines() == ["fit"]  # one process fitted, the other read its file
    assert outs[0][0] == outs[1][0]
    assert (series / tile / MODEL_FILE).is_file()

    # the stored model, read back with fitting forbidden, against a fresh fit in this process
    fresh = gapfill.fit(normalise_observations(read_series(series, tile_id=tile, parcel_id=ids[:FIT_PARCELS]).to_pandas()))

    def no_fit(*a, **k):
        raise AssertionError("a stored, current model must be read, not refitted")

    monkeypatch.setattr(gapfill, "fit", no_fit)
    reader = SeriesReader(series, with_model=False)
    stored = reader.gapfill_model(tile, reader._tile_stamp(tile), ids, wait_s=600)
    assert stored is not fresh
    np.testing.assert_array_equal(stored.clim, fresh.clim)
    np.testing.assert_array_equal(stored.s1_coef, fresh.s1_coef)
    assert fresh.boost_nodes is None  # this small tile is fitted without trees: the next test stores them
    assert (stored.sigma, stored.k68, stored.k90, stored.k68_edge, stored.k90_edge, stored.params, stored.n_fit) == (
        fresh.sigma, fresh.k68, fresh.k90, fresh.k68_edge, fresh.k90_edge, fresh.params, fresh.n_fit)
    obs = normalise_observations(read_series(series, tile_id=tile, parcel_id=ids[0]).to_pandas())
    cloudy = obs[(obs["sensor"] == "S2") & ~(obs["clear"] >= 0.5)][["parcel_id", "time"]]
    assert len(cloudy)
    pd.testing.assert_frame_equal(gapfill.fill(stored, obs, cloudy), gapfill.fill(fresh, obs, cloudy))


def test_a_grown_series_or_a_torn_file_is_refitted(site, tmp_path, monkeypatch):
    from alerts import gapfill

    series = tmp_path / "series"
    shutil.copytree(site.data_dir / "series", series, ignore=shutil.ignore_patterns(".gapfill-model*"))
    tile, ids = _tile_and_ids(series)
    fits = []
    real_fit = gapfill.fit
    monkeypatch.setattr(gapfill, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))

    def ask():
        reader = SeriesReader(series, with_model=False)  # a fresh worker: nothing cached in memory
        return reader.gapfill_model(tile, reader._tile_stamp(tile), ids, wait_s=600)

    ask()
    ask()
    assert len(fits) == 1
    newest = max((series / tile).rglob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)
    st = newest.stat()
    os.utime(newest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # the series was rewritten
    ask()
    assert len(fits) == 2
    (series / tile / MODEL_FILE).write_bytes(b"not a model")
    assert ask() is not None and len(fits) == 3
    ask()
    assert len(fits) == 3


def test_a_series_asked_during_the_fit_comes_without_fill_and_later_with_it(site, tmp_path, monkeypatch):
    import threading

    from alerts import gapfill
    from dashboards import series as series_mod

    series, ref_series = tmp_path / "series", tmp_path / "ref"
    for d in (series, ref_series):
        shutil.copytree(site.data_dir / "series", d, ignore=shutil.ignore_patterns(".gapfill-model*"))
    tile, ids = _tile_and_ids(series)
    # the reference: a reader that waited for its fit; a parcel it gap-fills
    ref = SeriesReader(ref_series, with_model=False)
    ref.gapfill_model(tile, ref._tile_stamp(tile), ids, wait_s=600)
    answers = {p: ref.series(tile, p, ids, fill=True, expected=False) for p in ids}
    pid, want = next((p, out) for p, out in answers.items() if any(v["filled"] for v in out["s2"]))
    release = threading.Event()
    real_fit = gapfill.fit
    monkeypatch.setattr(gapfill, "fit", lambda *a, **k: release.wait(60) and real_fit(*a, **k))
    monkeypatch.setattr(series_mod, "FILL_WAIT_S", 0.2)
    reader = SeriesReader(series, with_model=False)
    first = reader.series(tile, pid, ids, fill=True, expected=False)
    assert first["fill_pending"] is True and not any(v["filled"] for v in first["s2"])
    release.set()
    reader.gapfill_model(tile, reader._tile_stamp(tile), ids, wait_s=600)  # the fit under way ends
    later = reader.series(tile, pid, ids, fill=True, expected=False)  # the pending answer was not cached
    assert later["fill_pending"] is False and later["s2"] == want["s2"]


def test_a_fit_with_trees_is_stored_as_arrays_and_fills_as_the_fresh_fit(tmp_path):
    """Twelve real plots are enough for the boosted trees; their node table goes into the file
    (no pickle) and the model read back fills exactly as the fitted one."""
    from alerts import gapfill
    from alerts.series import read_observations, read_parcels
    from dashboards.gapfill_store import load_or_fit
    from tests.alerts.conftest import REAL

    ids = sorted(read_parcels(REAL / "parcels.csv")["parcel_id"])[:12]
    obs = read_observations(REAL / "observations.csv")
    obs = obs[obs["parcel_id"].isin(ids)].reset_index(drop=True)
    fresh = load_or_fit(tmp_path, (("stamp", 1),), {"sample": "twelve"}, lambda: gapfill.fit(obs))
    assert fresh.boost_nodes is not None and len(fresh.boost_roots) >= 10

    def no_fit():
        raise AssertionError("a stored, current model must be read, not refitted")

    stored = load_or_fit(tmp_path, (("stamp", 1),), {"sample": "twelve"}, no_fit)
    assert stored is not fresh
    np.testing.assert_array_equal(stored.boost_nodes, fresh.boost_nodes)
    np.testing.assert_array_equal(stored.boost_roots, fresh.boost_roots)
    assert stored.boost_baseline == fresh.boost_baseline and stored.k_horizon == fresh.k_horizon
    g = obs[obs["parcel_id"] == ids[0]]
    cloudy = g[(g["sensor"] == "S2") & ~(g["clear"] >= 0.5)][["parcel_id", "time"]]
    cloudy = cloudy.assign(time=cloudy["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    filled = gapfill.fill(fresh, g, cloudy)
    assert "boosted-trees" in filled["method"].iloc[0] and (filled["status"] == "ok").any()
    pd.testing.assert_frame_equal(gapfill.fill(stored, g, cloudy), filled)
