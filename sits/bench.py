"""Encoder benchmark (library side of ``sitsmon bench encoder``): plain values in, a JSON-able dict out.

(a) recurrent update cost per parcel/pixel per acquisition, one layer and the whole model, beside the
    machine's floors measured in the same run: memory bandwidth (in-place ``a *= 0.99`` on a large
    float32 array, numpy single thread and numba over all threads) and matmul throughput;
(b) one recurrent update vs re-encoding the whole series with a softmax Transformer of the same width;
(c) state bytes per parcel/pixel;
(d) on CUDA: updates per second for a tile of pixel states resident on the device.
Timings are the best of ``repeats`` runs after a warm-up.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numba
import numpy as np
import torch

from sits.layers import Block, make_mixer
from sits.models import EncoderConfig, SitsEncoder
from sits.models.encoder import RECURRENT_ROW_CHUNK
from sits.ops.retention.kernels import fused_step_numpy
from sits.testing import synthetic_series
from sits.tokens import S2, BandSet, Observation

logger = logging.getLogger(__name__)


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@numba.njit(parallel=True, fastmath=True)
def _scale_inplace(a, f):  # pragma: no cover - compiled
    n = a.shape[0]
    nt = numba.get_num_threads()
    step = (n + nt - 1) // nt
    for c in numba.prange(nt):
        for i in range(c * step, min(n, (c + 1) * step)):
            a[i] *= f


def bandwidth_floor(megabytes: int, repeats: int) -> dict:
    """Read+write bandwidth of an in-place multiply over ``megabytes`` of float32."""
    a = np.ones(megabytes * (1 << 20) // 4, dtype=np.float32)
    nbytes = 2 * a.nbytes  # read + write
    t_np = best_time(lambda: np.multiply(a, np.float32(0.99), out=a), repeats)
    t_nb = best_time(lambda: _scale_inplace(a, np.float32(0.99)), repeats)
    return {"array_mb": megabytes, "numpy_single_thread_gbps": round(nbytes / t_np / 1e9, 2),
            "numba_threads_gbps": round(nbytes / t_nb / 1e9, 2), "threads": numba.get_num_threads()}


def matmul_floor(repeats: int, n: int = 2048) -> dict:
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = best_time(lambda: a @ b, repeats)
    return {"size": n, "gflops": round(2 * n**3 / t / 1e9, 1)}


def layer_flops(d: int, ffn_mult: int) -> int:
    """Multiply-adds ×2 of one block's projections per token (qkv, out, FFN); the state step excluded."""
    return 2 * (3 * d * d + d * d + 2 * ffn_mult * d * d)


def state_step(d: int, heads: int, pixels: int, repeats: int, bw_gbps: float) -> dict:
    """The fused retention state step in place for ``pixels`` rows (one token each)."""
    K = d // heads
    rng = np.random.default_rng(0)
    S = np.zeros((pixels, heads, K, K), np.float32)
    q, k, v = (rng.standard_normal((pixels, 1, heads, K), dtype=np.float32) for _ in range(3))
    dt = np.full((pixels, 1), 5.0, np.float32)
    lam = np.log(np.full(heads, 0.99, np.float32))
    t = best_time(lambda: fused_step_numpy(q, k, v, dt, lam, S, S), repeats)
    state_bytes = S.nbytes
    floor_t = 2 * state_bytes / (bw_gbps * 1e9)
    return {"us_per_pixel": round(t / pixels * 1e6, 4), "state_bytes_per_pixel": state_bytes // pixels,
            "floor_us_per_pixel": round(floor_t / pixels * 1e6, 4), "ratio_to_floor": round(t / floor_t, 3)}


def layer_step(d: int, heads: int, pixels: int, repeats: int, mechanism: str = "retention", ffn_mult: int = 2,
               row_chunk: int = RECURRENT_ROW_CHUNK) -> dict:
    """One pre-norm block (projections, fused state step, FFN) in recurrent mode, state in place, on
    blocks of ``row_chunk`` rows as the model's recurrent path runs it (also reported: one block of all rows)."""
    torch.manual_seed(0)
    block = Block(make_mixer(mechanism, d, heads), d, ffn_mult).eval()
    S = torch.zeros((pixels, *block.mixer.state_shape()))
    x = torch.randn(pixels, 1, d)
    dt = torch.full((pixels, 1), 5.0)
    t = torch.full((pixels, 1), 3000.0, dtype=torch.float64)
    valid = torch.ones(pixels, 1, dtype=torch.bool)

    def run(chunk):
        with torch.no_grad():
            for a in range(0, pixels, chunk):
                r = slice(a, a + chunk)
                block(x[r], dt[r], t[r], valid[r], S[r], True, "recurrent", True)

    sec = best_time(lambda: run(row_chunk), repeats)
    whole = best_time(lambda: run(pixels), repeats)
    return {"us_per_pixel": round(sec / pixels * 1e6, 4), "row_chunk": row_chunk,
            "us_per_pixel_unchunked": round(whole / pixels * 1e6, 4)}


def model_step(config: EncoderConfig, pixels: int, repeats: int) -> dict:
    """The whole model's ``step`` (tokenising an S2 observation, every layer, state bookkeeping)."""
    torch.manual_seed(0)
    model = SitsEncoder(config).eval()
    state = model.init_state(pixels)
    rng = np.random.default_rng(0)
    t0 = np.datetime64("2024-05-01T10:00:00", "s").astype(np.int64)
    counter = [0]

    def obs():
        counter[0] += 1
        return Observation(int(t0 + counter[0] * 86400), "S2",
                           rng.random((pixels, model.bands.n_s2), dtype=np.float32), clear=1.0)

    holder = [state]

    def functional():
        holder[0], _ = model.step(holder[0], obs())

    def inplace():
        holder[0], _ = model.step(holder[0], obs(), inplace=True)

    return {"us_per_pixel": round(best_time(functional, repeats) / pixels * 1e6, 4),
            "us_per_pixel_inplace": round(best_time(inplace, repeats) / pixels * 1e6, 4),
            "layers": config.n_layers, "state_bytes_per_pixel": state.nbytes_per_item}


def versus_transformer(d: int, heads: int, layers: int, lengths: list[int], parcels: int, repeats: int,
                       update_rows: int = 8192) -> dict:
    """Per parcel: one recurrent update (``step`` on warm states, ``update_rows`` parcels per call so that
    the per-call overhead is amortised as in the monitor; functional, and in place as in a hot loop) vs re-encoding the whole series of length T
    with a causal softmax Transformer of the same width and depth (``parcels`` series per call); plus
    the largest difference between the parallel and recurrent outputs of the recurrent model."""
    torch.manual_seed(0)
    common = dict(d_model=d, n_heads=heads, n_layers=layers)
    rec = SitsEncoder(EncoderConfig(mechanism="retention", **common)).eval()
    soft = SitsEncoder(EncoderConfig(mechanism="softmax", **common)).eval()
    rng = np.random.default_rng(0)
    out = {"d_model": d, "heads": heads, "layers": layers, "transformer_parcels_per_call": parcels,
           "update_rows_per_call": update_rows, "by_length": []}
    for T in lengths:
        series = [synthetic_series(rng, T, pid=str(i)) for i in range(parcels)]
        enc = rec.encode(series, mode="parallel")
        rows = max(update_rows, parcels)
        state = enc.state.select(torch.arange(rows) % parcels)
        last = max(int(s.times[-1]) for s in series) + 3 * 86400
        obs = Observation(last, "S2", np.full((rows, rec.bands.n_s2), 0.2, np.float32), clear=1.0)
        t_step = best_time(lambda: rec.step(state, obs), repeats) / rows  # noqa: B023
        hot = state.select(torch.arange(rows))  # a private copy, updated in place as the monitor's hot loop does
        t_hot = best_time(lambda: rec.step(hot, obs, inplace=True), repeats) / rows  # noqa: B023
        t_soft = best_time(lambda: soft.encode(series, mode="parallel"), repeats) / parcels  # noqa: B023
        # parallel vs recurrent equality on the first parcel
        s0 = series[0]
        st, steps = rec.init_state(1), []
        for i in range(T):
            cols = s0.bands.sensor_columns(s0.sensor[i])
            o = Observation(s0.times[i], "S2" if s0.sensor[i] == S2 else "S1", s0.values[i : i + 1, cols],
                            clear=s0.clear[i : i + 1], orbit=int(s0.orbit[i]))
            st, so = rec.step(st, o)
            steps.append(so.embedding)
        diff = float((torch.cat(steps) - enc.embeddings[0]).abs().max())
        out["by_length"].append({"T": T, "recurrent_update_us_per_parcel": round(t_step * 1e6, 3),
                                 "recurrent_update_inplace_us_per_parcel": round(t_hot * 1e6, 3),
                                 "transformer_reencode_us_per_parcel": round(t_soft * 1e6, 3),
                                 "speedup": round(t_soft / t_step, 1), "speedup_inplace": round(t_soft / t_hot, 1),
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

    sec = best_time(run, repeats)
    return {"pixels": pixels, "state_dtype": str(state_dtype).replace("torch.", ""),
            "updates_per_s": round(pixels / sec, 1), "state_gb": round(S.numel() * S.element_size() / 1e9, 3)}


def run_benchmark(*, sizes: list[tuple[int, int]], pixels: int, layers: int, lengths: list[int], parcels: int,
                  bandwidth_mb: int, repeats: int, threads: int, gpu_pixels: int) -> dict:
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    result: dict = {"threads": threads, "pixels": pixels, "repeats": repeats,
                    "torch": torch.__version__, "numba": numba.__version__}
    bw = bandwidth_floor(bandwidth_mb, repeats)
    result["bandwidth_floor"] = bw
    result["matmul_floor"] = matmul_floor(repeats)
    floor_bw = max(bw["numpy_single_thread_gbps"], bw["numba_threads_gbps"])  # the stricter floor
    per_size = []
    for d, h in sizes:
        cfg = EncoderConfig(BandSet().s2, BandSet().s1, d_model=d, n_heads=h, n_layers=layers)
        entry = {"d_model": d, "heads": h,
                 "state_step": state_step(d, h, pixels, repeats, floor_bw),
                 "layer": layer_step(d, h, pixels, repeats),
                 "model": model_step(cfg, pixels, repeats)}
        entry["layer"]["matmul_floor_us_per_pixel"] = round(
            layer_flops(d, 2) / (result["matmul_floor"]["gflops"] * 1e9) * 1e6, 4)
        per_size.append(entry)
    result["update_cost"] = per_size
    result["versus_transformer"] = versus_transformer(64, 4, layers, lengths, parcels, repeats,
                                                      update_rows=min(pixels, 8192))
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
        budgets["speedup_at_T200_ge_200"] = {"value": at200[0]["speedup"], "pass": at200[0]["speedup"] >= 200}
        budgets["speedup_inplace_at_T200_ge_200"] = {"value": at200[0]["speedup_inplace"],
                                                     "pass": at200[0]["speedup_inplace"] >= 200}
    result["budgets"] = budgets
    return result
