"""Detector speed: µs per parcel per acquisition of each kernel and of the plain reference.

``bench_detectors()`` steps a synthetic season (grassland NDVI with cuts, S1 VH/VV with the cut
and a shared weather signal, clouds) through each detector, one acquisition at a time for all
parcels, as the monitor does; the reference (per-parcel Python) runs on a subset of the parcels
(it costs tens of µs per parcel). ``sitsmon bench monitor`` calls it; it returns a plain dict.
Compare ratios within one run, not absolute times across machines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from alerts.detectors.batch import KERNELS, AcquisitionInputs, KernelBatch, make_batch_detectors
from alerts.series import S2_BANDS, to_days

NAMES = ("mowing", "harvest", "solar")


def synthetic_season(n: int, days: float = 300.0, seed: int = 0) -> Iterator[AcquisitionInputs]:
    """Acquisitions of a synthetic season for ``n`` parcels, in time order: S2 every 5 days (30 %
    cloudy, per parcel), S1 every 6 days on two alternating orbits (VH falls 3 dB for 12 days at
    each cut; a weather signal shared by all parcels; 1 % of parcels turn solar and VV rises)."""
    rng = np.random.default_rng(seed)
    t0 = to_days("2024-01-01")
    cuts = np.sort(rng.uniform(130, 260, (n, 2)), axis=1)
    solar = rng.random(n) < 0.01
    events: list[tuple[float, str]] = [(d, "S2") for d in np.arange(60.0, days, 5.0)]
    events += [(d, "S1") for d in np.arange(61.0, days, 6.0)]
    events.sort()
    for k, (day, sensor) in enumerate(events):
        inp = AcquisitionInputs.empty(sensor, n)
        inp.t_days[:] = t0 + day
        since = day - cuts  # [n, 2]
        if sensor == "S2":
            ndvi = np.full(n, 0.8)
            for c in range(2):
                cut = (since[:, c] >= 0) & (since[:, c] < 30)
                ndvi[cut] = 0.45 + 0.35 * since[cut, c] / 30
            ndvi += rng.normal(0, 0.02, n)
            total = 0.5
            bands = np.tile(np.array([0.04, 0.07, 0.0, 0.12, 0.25, 0.3, 0.0, np.nan, 0.2, 0.1]), (n, 1))
            bands[:, S2_BANDS.index("B04")] = total * (1 - ndvi) / 2
            bands[:, S2_BANDS.index("B08")] = total * (1 + ndvi) / 2
            inp.bands[:] = bands
            inp.clear[:] = (rng.random(n) > 0.3).astype(float)
        else:
            weather = 1.5 * np.sin(day / 20.0)
            cut = ((since >= 0) & (since < 12)).any(axis=1)
            vh_db = -16.0 + weather - 3.0 * cut + rng.normal(0, 0.4, n)
            vv_db = -12.0 + weather + rng.normal(0, 0.4, n) + np.where(solar & (day > 150), 8.0, 0.0)
            inp.vh[:] = 10 ** (vh_db / 10)
            inp.vv[:] = 10 ** (vv_db / 10)
            inp.orbit[:] = 73 if k % 2 else 124
            inp.vh_ref[:] = np.median(vh_db)
            inp.vv_ref[:] = np.median(vv_db)
        yield inp


def _subset(inp: AcquisitionInputs, m: int) -> AcquisitionInputs:
    return AcquisitionInputs(sensor=inp.sensor, **{k: v[:m] for k, v in vars(inp).items() if k != "sensor"})


def bench_detectors(
    parcels: int = 100_000,
    reference_parcels: int = 1_000,
    days: float = 300.0,
    names: Sequence[str] = NAMES,
    seed: int = 0,
) -> dict[str, Any]:
    """Median seconds per acquisition and µs per parcel per acquisition of each kernel (on
    ``parcels``) and of the reference (on ``reference_parcels``), over one synthetic season.
    Land use: grassland for mowing and solar, cereal for harvest (every parcel handled)."""
    land_use = {"mowing": "grassland", "harvest": "cereal", "solar": "grassland"}
    ids = [f"P{i}" for i in range(parcels)]
    out: dict[str, Any] = {"parcels": parcels, "reference_parcels": reference_parcels, "detectors": {}}
    total_s = total_cpu_s = 0.0
    for name in names:
        kernel = KERNELS[name]()
        reference = make_batch_detectors([name], kernel=False)[0]
        assert isinstance(kernel, KernelBatch)
        k_states = kernel.init_states(ids, [land_use[name]] * parcels)
        r_states = reference.init_states(ids[:reference_parcels], [land_use[name]] * reference_parcels)
        warm = kernel.init_states(ids[:2], [land_use[name]] * 2)
        k_times, k_cpu, r_times, n_events = [], [], [], 0
        for k, inp in enumerate(synthetic_season(parcels, days, seed)):
            if k == 0:  # compile (or load the cache) outside the timing
                kernel.step(warm, _subset(inp, 2))
            t, c = time.perf_counter(), time.process_time()
            n_events += len(kernel.step(k_states, inp))
            k_times.append(time.perf_counter() - t)
            k_cpu.append(time.process_time() - c)
            sub = _subset(inp, reference_parcels)
            t = time.perf_counter()
            reference.step(r_states, sub)
            r_times.append(time.perf_counter() - t)
        k_med, r_med = float(np.median(k_times)), float(np.median(r_times))
        total_s += k_med
        total_cpu_s += float(np.median(k_cpu))
        out["detectors"][name] = {
            "kernel_s_per_acquisition": round(k_med, 5),
            "kernel_us_per_parcel": round(1e6 * k_med / parcels, 3),
            # CPU time of this process: on a shared machine wall time also counts the others' load
            "kernel_cpu_us_per_parcel": round(1e6 * float(np.median(k_cpu)) / parcels, 3),
            "reference_us_per_parcel": round(1e6 * r_med / reference_parcels, 2),
            "speedup": round((r_med / reference_parcels) / (k_med / parcels), 1),
            "acquisitions": len(k_times),
            "events": n_events,
            "state_bytes_per_parcel": round(k_states.nbytes() / parcels, 1),
        }
    out["kernels_s_per_acquisition"] = round(total_s, 5)
    out["kernels_us_per_parcel"] = round(1e6 * total_s / parcels, 3)
    out["kernels_cpu_s_per_acquisition"] = round(total_cpu_s, 5)
    out["state_bytes_per_parcel"] = round(
        sum(d["state_bytes_per_parcel"] for d in out["detectors"].values()), 1
    )
    return out


if __name__ == "__main__":  # python -m alerts.detectors.bench [parcels]
    import json
    import sys

    print(json.dumps(bench_detectors(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000), indent=1))
