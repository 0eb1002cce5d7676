"""``ingest import`` identifies data by content and keys rows by (parcel_id, time, sensor) (issue 15
item 6): one slot per acquisition merged with what is stored, one acquisition event per slot written
(issue 9 item 1: imported series stream through the monitor like ingested ones)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from ingest.events import ACQUISITIONS_TOPIC, RecordingPublisher
from ingest.importer import import_series
from ingest.series import compact_series, read_series
from sitsmon.cli import main
from sitsmon.settings import get_settings
from tests import SHARED_DATA

REAL = SHARED_DATA / "grassland-sk-dev" / "observations.csv"


def store_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return pd.read_csv(REAL, dtype={"parcel_id": str})


def test_same_stem_adds_and_same_rows_under_a_new_name_are_not_stored_twice(real, tmp_path):
    series = tmp_path / "series"
    src = tmp_path / "observations.csv"
    real = real[real.parcel_id.isin(sorted(real.parcel_id.unique())[:6])]  # small: a few seconds
    real.to_csv(src, index=False)
    first = import_series(src, series)
    assert first.rows == first.new_rows == len(real) and read_series(series).num_rows == len(real)
    # another observations.csv (the issue: it replaced 33,466 rows with 321)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = real[real.time.isin(sorted(real.time.unique())[:30])].copy()  # 30 acquisitions: 30 slot rewrites
    other["parcel_id"] = "NEW-" + other["parcel_id"]
    other.to_csv(other_dir / "observations.csv", index=False)
    second = import_series(other_dir / "observations.csv", series)
    assert second.new_rows == len(other) > 0 and read_series(series).num_rows == len(real) + len(other)
    # the same rows as the first import under a new name: nothing written
    before = store_digest(series)
    renamed = tmp_path / "copy-of-observations.csv"
    renamed.write_bytes(src.read_bytes())
    third = import_series(renamed, series)
    assert third.already_imported and third.slots == 0 and third.import_id == first.import_id
    assert store_digest(series) == before and read_series(series).num_rows == len(real) + len(other)
    manifest = json.loads((series / "imported" / "imports.json").read_text())
    assert set(manifest) == {first.import_id, second.import_id}


def test_overlapping_rows_follow_the_duplicate_policy(real, tmp_path):
    series = tmp_path / "series"
    head = real.head(40)
    head.to_csv(tmp_path / "a.csv", index=False)
    import_series(tmp_path / "a.csv", series)
    fix = head.head(10).copy()
    s1 = fix.sensor == "S1"
    fix.loc[s1, "VV"] = 0.5  # a correction of 10 stored rows, plus 5 rows the store did not have
    more = real.iloc[40:45]
    pd.concat([fix, more]).to_csv(tmp_path / "b.csv", index=False)
    r = import_series(tmp_path / "b.csv", series)
    stored = read_series(series).to_pandas()
    assert r.rows == 15 and r.new_rows == 5 and len(stored) == 45
    key = stored.set_index(["parcel_id", "sensor", stored.time.dt.strftime("%Y-%m-%dT%H:%M:%SZ")])
    for _, row in fix[s1].iterrows():
        assert key.loc[(row.parcel_id, "S1", row.time), "VV"] == pytest.approx(0.5)


def test_one_slot_per_acquisition_and_one_event_per_slot_written(real, tmp_path):
    series = tmp_path / "series"
    part = real[real.parcel_id.isin(sorted(real.parcel_id.unique())[:3])]
    part.to_csv(tmp_path / "p.csv", index=False)
    bus = RecordingPublisher()
    r = import_series(tmp_path / "p.csv", series, tile_id="sk", publisher=bus)
    times = pd.to_datetime(part.time, utc=True)
    acquisitions = set(zip(part.sensor, times.dt.strftime("%Y%m%d"), strict=True))
    files = {(p.parent.name, p.stem) for p in (series / "sk").glob("S[12]/*.parquet")}
    assert files == acquisitions and r.slots == len(acquisitions) == len(bus.messages)
    values = [m[2] for m in bus.messages]
    assert all(t == ACQUISITIONS_TOPIC and k == "sk" for t, k, _ in bus.messages)
    assert all(v["cube"] == "" and v["series"] == str(series / "sk") and v["item_ids"] == [f"import:{r.import_id}"]
               for v in values)
    assert {(v["sensor"], v["slot"]) for v in values} == acquisitions
    assert [v["time"] for v in values] == sorted(v["time"] for v in values)  # in time order for the monitor
    # importing the same rows again publishes nothing: nothing changed
    again = RecordingPublisher()
    import_series(tmp_path / "p.csv", series, tile_id="sk", publisher=again)
    assert again.messages == []


def test_an_import_after_compaction_keeps_the_compacted_rows(real, tmp_path):
    series = tmp_path / "series"
    day = real[real.time == real.time.iloc[0]]
    day.iloc[:2].to_csv(tmp_path / "a.csv", index=False)
    day.iloc[2:4].to_csv(tmp_path / "b.csv", index=False)
    import_series(tmp_path / "a.csv", series)
    assert compact_series(series, "imported") == 1
    r = import_series(tmp_path / "b.csv", series)
    stored = read_series(series).to_pandas()
    assert r.new_rows == 2 and sorted(stored.parcel_id) == sorted(day.iloc[:4].parcel_id)


def test_cli_import_publishes_on_the_configured_bus(real, tmp_path, monkeypatch, capsys):
    from monitor.bus import make_bus

    monkeypatch.setenv("SITSMON_PATHS__DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        part = real[real.parcel_id == real.parcel_id.iloc[0]].head(30)
        part.to_csv(tmp_path / "p.csv", index=False)
        assert main(["ingest", "import", str(tmp_path / "p.csv")]) == 0
        report = json.loads(capsys.readouterr().out)
    finally:
        get_settings.cache_clear()
    bus = make_bus("memory", path=tmp_path / "data" / "bus.sqlite")
    try:
        consumer = bus.consumer(ACQUISITIONS_TOPIC, "test")
        got = []
        for _ in range(5):
            got += consumer.poll(timeout_s=0.2)
        assert len(got) == report["slots"] > 0
        assert {m.value["slot"] for m in got} == set(pd.to_datetime(part.time, utc=True).dt.strftime("%Y%m%d"))
    finally:
        bus.close()
    assert (tmp_path / "data" / "series" / "imported").is_dir()


def test_a_file_of_rows_already_stored_writes_and_publishes_nothing(real, tmp_path):
    series = tmp_path / "series"
    real.head(40).to_csv(tmp_path / "a.csv", index=False)
    import_series(tmp_path / "a.csv", series)
    before = store_digest(series)
    real.head(40).iloc[::3].to_csv(tmp_path / "subset.csv", index=False)  # other content, nothing new
    bus = RecordingPublisher()
    r = import_series(tmp_path / "subset.csv", series, publisher=bus)
    assert not r.already_imported and r.new_rows == 0 and r.slots == 0 and bus.messages == []
    assert store_digest(series) == before
