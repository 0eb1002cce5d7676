"""The series store on S3 (a moto server) against local disk, in one run: 8 slot files of 20 000 rows, one
compaction, a read of 207 parcels and a read of everything. Compare the ratios only: moto is a Python
server on the same machine, not S3.

    PYTHONPATH=. SITSMON_SERVICES_DIR=.services python scripts/bench_series_s3.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from contracts import storage
from ingest.series import SCHEMA, compact_series, read_series, write_slot
from ingest.types import Sensor
from tests.services import S3_TEST_CREDENTIALS, moto_s3_service

ROWS = 20_000
SLOTS = 8


def table(time_s: int, rng: np.random.Generator) -> pa.Table:
    cols = {"parcel_id": pa.array([f"P{i:06d}" for i in range(ROWS)]),
            "time": pa.array(np.full(ROWS, time_s, "datetime64[s]"), pa.timestamp("s", tz="UTC")),
            "sensor": pa.array(["S2"] * ROWS)}
    for f in SCHEMA:
        if f.name not in cols:
            floats = pa.types.is_floating(f.type)
            cols[f.name] = pa.array(rng.random(ROWS).astype(np.float32)) if floats else pa.nulls(ROWS, f.type)
    return pa.table(cols).cast(SCHEMA)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(root, tables: list[pa.Table]) -> str:
    write_s, _ = timed(lambda: [write_slot(root, "T1", Sensor.S2, f"202405{k + 1:02d}", t) for k, t in enumerate(tables)])
    compact_s, _ = timed(lambda: compact_series(root, "T1"))
    some = [f"P{i:06d}" for i in range(0, ROWS, 97)]
    some_s, _ = timed(lambda: read_series(root, "T1", parcel_id=some))
    all_s, everything = timed(lambda: read_series(root, "T1"))
    return (f"write {SLOTS} slots x {ROWS} rows {write_s:6.2f} s | compact {compact_s:5.2f} s | "
            f"read {len(some)} parcels {some_s:5.2f} s | read all {everything.num_rows} rows {all_s:5.2f} s")


def main() -> None:
    os.environ.update(S3_TEST_CREDENTIALS)
    rng = np.random.default_rng(0)
    tables = [table(1714730400 + 86400 * k, rng) for k in range(SLOTS)]
    with moto_s3_service() as url, tempfile.TemporaryDirectory() as tmp:
        os.environ["AWS_ENDPOINT_URL"] = url
        storage.configure(endpoint_url=url)
        storage.filesystem().mkdir("bench")
        print(f"{'local':10s}", run(Path(tmp) / "series", tables))
        print(f"{'s3 (moto)':10s}", run("s3://bench/series", tables))


if __name__ == "__main__":
    main()
