"""Encoder benchmark (library side of ``sitsmon bench encoder``): plain values in, a JSON-able dict out.

(a) recurrent update cost per parcel/pixel per acquisition, one layer and the whole model, beside the
    machine's floors measured in the same run: memory bandwidth (in-place ``a *= 0.99`` read-modify-write
    of a float32 array as large as the state being updated, numpy single thread and numba over all
    threads, the faster kept) and matmul throughput (2048² GEMM);
(b) one recurrent update vs re-encoding the whole series with a softmax Transformer of the same width and
    depth (batched, ``scaled_dot_product_attention``, no autograd) — both pre-tokenised ("core", the
    budget) and end to end from ``AcquisitionBatch``/``Series`` (tokenising included on both sides);
(c) state bytes per parcel/pixel;
(d) on CUDA: updates per second for a tile of pixel states resident on the device.

Robustness on a shared machine: every measurement is a group of callables run INTERLEAVED
(floor, kernel, floor, kernel, … round after round) after a warm-up; each is reported as the median
(and the minimum) over the rounds, and every ratio to a floor is the median of the per-round ratios, so
a noisy neighbour slows the floor and the kernel of the same round alike. Process CPU time per round is
recorded too (``load_share``: CPU seconds the process got per wall second and thread).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable

import numba
import numpy as np
import torch

from sits.layers import Block, make_mixer
from sits.models import EncoderConfig, SitsEncoder
from sits.models.streaming import RECURRENT_ROW_CHUNK
from sits.ops.retention.kernels import fused_retention_step
from sits.testing import synthetic_series
from sits.tokens import S2, AcquisitionBatch, BandSet, batch_observation, batch_series

logger = logging.getLogger(__name__)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, dict]:
    """Run ``fns`` in turn, ``repeats`` rounds after ``warmup`` rounds. Returns per name the list of
    wall seconds (``times``) and the process CPU seconds (``cpu``) of each round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {name: {"times": [], "cpu": []} for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            t1, c1 = time.perf_counter(), time.process_time()
            out[name]["times"].append(t1 - t0)
            out[name]["cpu"].append(c1 - c0)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of ``a[r] / b[r]``."""
    return med([x / y for x, y in zip(a, b, strict=True)])


def load_share(rec: dict, threads: int) -> float:
    """CPU seconds the process got per wall second and thread (1.0: the threads ran undisturbed)."""
    return round(sum(rec["cpu"]) / sum(rec["times"]) / threads, 3)


@numba.njit(parallel=True, fastmath=True)
def _scale_inplace(a, f):  # pragma: no cover - compiled
    n = a.shape[0]
    nt = numba.get_num_threads()
    step = (n + nt - 1) // nt
    for c in numba.prange(nt):
        for i in range(c * step, min(n, (c + 1) * step)):
            a[i] *= f


def bandwidth_fns(nbytes: int) -> tuple[dict[str, Callable[[], object]], int]:
    """In-place read-modify-write floors over ``nbytes`` of float32; returns (callables, bytes moved)."""
    a = np.ones(max(nbytes // 4, 1024), dtype=np.float32)
    f = np.float32(0.99)
    return ({"bw_numpy_1thread": lambda: np.multiply(a, f, out=a),
             "bw_numba_threads": lambda: _scale_inplace(a, f)}, 2 * a.nbytes)


def bw_floor_times(res: dict) -> list[float]:
    """Per round, the faster of the two bandwidth floors (the stricter floor)."""
    return [min(x, y) for x, y in zip(res["bw_numpy_1thread"]["times"], res["bw_numba_threads"]["times"], strict=True)]


def matmul_fn(n: int = 2048) -> tuple[Callable[[], object], int]:
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    return (lambda: torch.mm(a, b, out=c)), 2 * n**3


def layer_flops(d: int, ffn_mult: int) -> int:
    """Multiply-adds ×2 of one block's projections per token (qkv, out, FFN); the state step excluded."""
    return 2 * (3 * d * d + d * d + 2 * ffn_mult * d * d)


def floors(bandwidth_mb: int, repeats: int, threads: int) -> dict:
    """The machine's floors on a large array (reported for reference; the ratios use the floors measured
    interleaved with each kernel)."""
    fns, moved = bandwidth_fns(bandwidth_mb << 20)
    mm, flops = matmul_fn()
    res = interleaved({**fns, "matmul": mm}, repeats)
    return {"bandwidth_floor": {
                "array_mb": bandwidth_mb, "threads": threads,
                "numpy_single_thread_gbps": round(moved / med(res["bw_numpy_1thread"]["times"]) / 1e9, 2),
                "numba_threads_gbps": round(moved / med(res["bw_numba_threads"]["times"]) / 1e9, 2),
                "numba_threads_gbps_best": round(moved / min(res["bw_numba_threads"]["times"]) / 1e9, 2)},
            "matmul_floor": {"size": 2048, "gflops": round(flops / med(res["matmul"]["times"]) / 1e9, 1),
                             "gflops_best": round(flops / min(res["matmul"]["times"]) / 1e9, 1)},
            "load_share": load_share(res["matmul"], threads)}


def update_cost(d: int, heads: int, pixels: int, repeats: int, threads: int, layers: int, ffn_mult: int = 2,
                row_chunk: int = RECURRENT_ROW_CHUNK) -> dict:
    """(a) for one size: the fused state step (in place), one block's streaming step (on blocks of
    ``row_chunk`` rows, as the model runs it), the whole model's ``step`` (functional and in place),
    interleaved with the bandwidth floor (an array as large as the state) and the matmul floor."""
    K = d // heads
    rng = np.random.default_rng(0)
    # the retention state step alone (numba, in place): decay, rank-one update and read-out
    S = np.zeros((pixels, heads, K, K), np.float32)
    q, k, v = (rng.standard_normal((pixels, 1, heads, K), dtype=np.float32) for _ in range(3))
    dt = np.full((pixels, 1), 5.0, np.float32)
    lam = np.log(np.full(heads, 0.99, np.float32))
    o = np.empty_like(v)
    # one block (retention), state in place
    torch.manual_seed(0)
    block = Block(make_mixer("retention", d, heads), d, ffn_mult).eval()
    St = torch.zeros((pixels, *block.mixer.state_shape()))
    x = torch.randn(pixels, 1, d)
    dtt = torch.full((pixels, 1), 5.0)
    tt = torch.full((pixels, 1), 3000.0, dtype=torch.float64)
    valid = torch.ones(pixels, 1, dtype=torch.bool)

    def layer():  # the block's streaming step (the fused op), in place, on row blocks as the model runs it
        for a in range(0, pixels, row_chunk):
            r = slice(a, a + row_chunk)
            S_r = St[r]
            block.step(x[r], dtt[r], tt[r], valid[r], S_r, S_out=S_r)

    # whole model
    cfg = EncoderConfig(BandSet().s2, BandSet().s1, d_model=d, n_heads=heads, n_layers=layers)
    model = SitsEncoder(cfg).eval()
    t0 = int(np.datetime64("2024-05-01T10:00:00", "s").astype(np.int64))
    values = rng.random((pixels, model.bands.n_s2), dtype=np.float32)
    counter = [0]

    def obs():
        counter[0] += 1
        return AcquisitionBatch(time_s=t0 + counter[0] * 86400, sensor="S2", values=values, clear=1.0)

    holder = [model.init_state(pixels), model.init_state(pixels)]
    buffers = [model.init_state(pixels), model.init_state(pixels)]

    def functional():
        holder[0], _ = model.step(holder[0], obs())

    def inplace():
        holder[1], _ = model.step(holder[1], obs(), out=holder[1])

    def double_buffered():  # the new state into the spare, then swap (the previous one stays intact)
        new, _ = model.step(buffers[0], obs(), out=buffers[1])
        buffers[0], buffers[1] = new, buffers[0]

    bw, moved = bandwidth_fns(S.nbytes)
    mm, mm_flops = matmul_fn()
    res = interleaved({**bw, "state_step": lambda: fused_retention_step(q, k, v, dt, lam, S, S, o), "matmul": mm,
                       "layer": layer, "model": functional, "model_inplace": inplace,
                       "model_double_buffered": double_buffered}, repeats)
    floor_t = bw_floor_times(res)
    us = {n: med(r["times"]) / pixels * 1e6 for n, r in res.items()}

    def cpu_us(name: str) -> float:
        """Median process CPU time per pixel divided by the threads: what the wall time would be with the
        threads running undisturbed (an estimate, reported beside the wall time, never instead of it)."""
        return round(med(res[name]["cpu"]) / pixels * 1e6 / threads, 4)
    mm_us_per_pixel = [t / mm_flops * layer_flops(d, ffn_mult) * 1e6 for t in res["matmul"]["times"]]
    layer_floor_us = [m + f / pixels * 1e6 for m, f in zip(mm_us_per_pixel, floor_t, strict=True)]
    return {
        "d_model": d, "heads": heads, "pixels": pixels,
        "bandwidth_floor_same_run": {"array_mb": round(S.nbytes / 2**20, 1),
                                     "gbps": round(moved / med(floor_t) / 1e9, 2),
                                     "us_per_pixel": round(med(floor_t) / pixels * 1e6, 4)},
        "matmul_floor_same_run_gflops": round(mm_flops / med(res["matmul"]["times"]) / 1e9, 1),
        "state_step": {"us_per_pixel": round(us["state_step"], 4),
                       "us_per_pixel_min": round(min(res["state_step"]["times"]) / pixels * 1e6, 4),
                       "cpu_us_per_pixel_per_thread": cpu_us("state_step"),
                       "state_bytes_per_pixel": S.nbytes // pixels,
                       "floor_us_per_pixel": round(med(floor_t) / pixels * 1e6, 4),
                       "ratio_to_floor": round(paired_ratio(res["state_step"]["times"], floor_t), 3)},
        "layer": {"us_per_pixel": round(us["layer"], 4),
                  "us_per_pixel_min": round(min(res["layer"]["times"]) / pixels * 1e6, 4),
                  "cpu_us_per_pixel_per_thread": cpu_us("layer"),
                  "row_chunk": row_chunk,
                  "matmul_floor_us_per_pixel": round(med(mm_us_per_pixel), 4),
                  "floor_us_per_pixel": round(med(layer_floor_us), 4),
                  "ratio_to_floor": round(paired_ratio([t / pixels * 1e6 for t in res["layer"]["times"]],
                                                       layer_floor_us), 3),
                  "note": "floor = projection GEMM flops at the measured 2048² matmul rate + one "
                          "read-modify-write of the state at the measured bandwidth, per round"},
        "model": {"us_per_pixel": round(us["model"], 4), "us_per_pixel_inplace": round(us["model_inplace"], 4),
                  "us_per_pixel_inplace_min": round(min(res["model_inplace"]["times"]) / pixels * 1e6, 4),
                  "us_per_pixel_double_buffered": round(us["model_double_buffered"], 4),
                  "note": "us_per_pixel: step() allocating a new state (its first-touch page faults included); "
                          "inplace: step(out=state); double_buffered: step(out=spare), input state kept",
                  "layers": layers, "state_bytes_per_pixel": holder[0].nbytes_per_item},
        "load_share": load_share(res["layer"], threads),
    }


def versus_transformer(d: int, heads: int, layers: int, lengths: list[int], parcels: int, repeats: int,
                       update_rows: int = 16384) -> dict:
    """(b) Per parcel: one recurrent update (``step`` on warm states, ``update_rows`` parcels per call so
    that the per-call overhead is amortised as in the monitor) vs re-encoding the whole series of length T
    with a causal softmax Transformer of the same width and depth (``parcels`` series per call, batched,
    SDPA, no autograd). "core": both sides pre-tokenised (the budget); "end_to_end": from
    ``AcquisitionBatch`` / ``Series`` (tokenising included on both sides). Interleaved rounds, medians, the
    speed-up is the median of the per-round ratios. Also the largest difference between the parallel
    and recurrent outputs of the recurrent model."""
    torch.manual_seed(0)
    common = dict(d_model=d, n_heads=heads, n_layers=layers)
    rec = SitsEncoder(EncoderConfig(mechanism="retention", **common)).eval()
    soft = SitsEncoder(EncoderConfig(mechanism="softmax", **common)).eval()
    rng = np.random.default_rng(0)
    out = {"d_model": d, "heads": heads, "layers": layers, "transformer_parcels_per_call": parcels,
           "transformer_attention": "torch.nn.functional.scaled_dot_product_attention (causal, batched)",
           "update_rows_per_call": update_rows, "by_length": []}
    for T in lengths:
        series = [synthetic_series(rng, T, pid=str(i)) for i in range(parcels)]
        enc = rec.encode(series, mode="parallel")
        rows = max(update_rows, parcels)
        state = enc.state.select(torch.arange(rows) % parcels)
        hot = state.clone()  # a private copy, updated in place as the monitor's hot loop does
        spare = state.clone()  # the double buffer: the new state goes there, the input state stays intact
        last = max(int(s.times[-1]) for s in series) + 3 * 86400
        obs = AcquisitionBatch(time_s=last, sensor="S2", values=np.full((rows, rec.bands.n_s2), 0.2, np.float32),
                               clear=1.0)
        tb_obs = batch_observation(obs, rec.normalization, rec.device)
        tb_series = batch_series(series, soft.normalization, soft.device)

        def soft_core(tb=tb_series):
            with torch.no_grad():
                soft.run(tb, None, mode="parallel", output_final_state=False)

        def rec_core(st=state, tb=tb_obs):
            rec.step(st, tb)

        def rec_core_inplace(st=hot, tb=tb_obs):
            rec.step(st, tb, out=st)

        def rec_core_double_buffered(st=state, sp=spare, tb=tb_obs):
            rec.step(st, tb, out=sp)

        res = interleaved({
            "soft_core": soft_core, "rec_core": rec_core, "rec_core_inplace": rec_core_inplace,
            "rec_core_double_buffered": rec_core_double_buffered,
            "soft_e2e": lambda s=series: soft.encode(s, mode="parallel"),
            "rec_e2e": lambda st=state, o=obs: rec.step(st, o),
        }, repeats)
        per = {"soft_core": parcels, "soft_e2e": parcels, "rec_core": rows, "rec_core_inplace": rows,
               "rec_core_double_buffered": rows, "rec_e2e": rows}
        pp = {n: [t / per[n] for t in r["times"]] for n, r in res.items()}
        # parallel vs recurrent equality on the first parcel
        s0 = series[0]
        st, steps = rec.init_state(1), []
        for i in range(T):
            cols = s0.bands.sensor_columns(s0.sensor[i])
            o = AcquisitionBatch(time_s=s0.times[i], sensor="S2" if s0.sensor[i] == S2 else "S1",
                                 values=s0.values[i : i + 1, cols], clear=s0.clear[i : i + 1], orbit=int(s0.orbit[i]))
            st, so = rec.step(st, o)
            steps.append(so.embedding)
        diff = float((torch.cat(steps) - enc.embeddings[0]).abs().max())
        out["by_length"].append({
            "T": T,
            "recurrent_update_us_per_parcel": round(med(pp["rec_core"]) * 1e6, 3),
            "recurrent_update_inplace_us_per_parcel": round(med(pp["rec_core_inplace"]) * 1e6, 3),
            "transformer_reencode_us_per_parcel": round(med(pp["soft_core"]) * 1e6, 3),
            "speedup": round(paired_ratio(pp["soft_core"], pp["rec_core"]), 1),
            "recurrent_update_double_buffered_us_per_parcel": round(med(pp["rec_core_double_buffered"]) * 1e6, 3),
            "speedup_inplace": round(paired_ratio(pp["soft_core"], pp["rec_core_inplace"]), 1),
            "speedup_double_buffered": round(paired_ratio(pp["soft_core"], pp["rec_core_double_buffered"]), 1),
            "end_to_end": {"recurrent_update_us_per_parcel": round(med(pp["rec_e2e"]) * 1e6, 3),
                           "transformer_reencode_us_per_parcel": round(med(pp["soft_e2e"]) * 1e6, 3),
                           "speedup": round(paired_ratio(pp["soft_e2e"], pp["rec_e2e"]), 1)},
            "parallel_vs_recurrent_max_abs_diff": diff})
    return out


def gpu_updates(d: int, heads: int, pixels: int, repeats: int, state_dtype: torch.dtype) -> dict:
    """Updates per second of the retention state step for ``pixels`` states resident on CUDA."""
    from sits.ops.retention.fused_recurrent import fused_recurrent_retention

    dev = torch.device("cuda")
    K = d // heads
    S = torch.zeros(pixels, heads, K, K, device=dev, dtype=state_dtype)
    q, k, v = (torch.randn(pixels, 1, heads, K, device=dev) for _ in range(3))
    dt = torch.full((pixels, 1), 5.0, device=dev)
    lam = torch.log(torch.full((heads,), 0.99, device=dev))

    def run():
        with torch.no_grad():
            fused_recurrent_retention(q, k, v, dt, lam, S, True, inplace=True, state_dtype=state_dtype)
        torch.cuda.synchronize()

    sec = med(interleaved({"gpu": run}, repeats)["gpu"]["times"])
    return {"pixels": pixels, "state_dtype": str(state_dtype).replace("torch.", ""),
            "updates_per_s": round(pixels / sec, 1), "state_gb": round(S.numel() * S.element_size() / 1e9, 3)}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - platform without getloadavg
        return None


def run_benchmark(*, sizes: list[tuple[int, int]], pixels: int, layers: int, lengths: list[int], parcels: int,
                  bandwidth_mb: int, repeats: int, threads: int, gpu_pixels: int, update_rows: int = 16384) -> dict:
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    result: dict = {"threads": threads, "pixels": pixels, "repeats": repeats, "statistic": "median of interleaved rounds",
                    "torch": torch.__version__, "numba": numba.__version__,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                    "loadavg_start": _loadavg()}
    result.update(floors(bandwidth_mb, repeats, threads))
    per_size = [update_cost(d, h, pixels, repeats, threads, layers) for d, h in sizes]
    result["update_cost"] = per_size
    result["versus_transformer"] = versus_transformer(64, 4, layers, lengths, parcels, repeats,
                                                      update_rows=min(pixels, update_rows))
    result["state_bytes_per_pixel"] = {f"{e['d_model']}x{e['heads']}": {
        "per_layer": e["state_step"]["state_bytes_per_pixel"], "model": e["model"]["state_bytes_per_pixel"]}
        for e in per_size}
    if torch.cuda.is_available():
        result["gpu"] = {"device": torch.cuda.get_device_name(0), "runs": [
            gpu_updates(d, h, gpu_pixels, repeats, dtype) for d, h in sizes for dtype in (torch.float32, torch.bfloat16)]}
    else:
        result["gpu"] = {"available": False}
    first = next((e for e in per_size if (e["d_model"], e["heads"]) == (64, 4)), None)
    budgets = {}
    if first is not None:
        budgets["layer_us_per_pixel_64x4_le_1.5"] = {"value": first["layer"]["us_per_pixel"],
                                                      "pass": first["layer"]["us_per_pixel"] <= 1.5}
        budgets["state_step_ratio_to_bandwidth_floor_le_1.5"] = {"value": first["state_step"]["ratio_to_floor"],
                                                                  "pass": first["state_step"]["ratio_to_floor"] <= 1.5}
    at200 = [r for r in result["versus_transformer"]["by_length"] if r["T"] == 200]
    if at200:
        # the streaming forms (what the monitor's loop runs): in place, and double-buffered (the input
        # state kept as a rewind point); the allocating step() is reported beside them in by_length
        for form in ("inplace", "double_buffered"):
            value = at200[0][f"speedup_{form}"]
            budgets[f"speedup_{form}_at_T200_ge_200"] = {"value": value, "pass": value >= 200}
    result["budgets"] = budgets
    result["loadavg_end"] = _loadavg()
    return result
