"""Numba CPU kernels for the recurrent retention step (checked against ``naive.py`` in the tests).

The fused step updates the state IN PLACE and reads each state element once and writes it once: decay,
rank-one update and read-out happen in the same pass, so the step is bound by memory bandwidth (the
``bench encoder`` floor). Arrays: q, k ``[B, T, H, K]``, v ``[B, T, H, V]``, dt ``[B, T]``, lam ``[H]``,
S ``[B, H, K, V]`` (C-contiguous), out ``[B, T, H, V]``; all float32. q, k, v may be strided views
(slices of one fused qkv projection). The decay ``exp(lam_h · dt)`` is computed once per token and head;
the read-out accumulates in a scratch vector allocated once per chunk of rows (not per row).

:func:`fused_retention_ln_kernel` is the layer's streaming variant: it also scales ``q`` and applies the
per-head layer norm (no affine) to the read-out, so the retention mixer's whole middle part is one pass.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

PARALLEL_MIN_ROWS = 256  # below this many rows the serial kernel avoids thread start-up costs


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _rows(b0, b1, q, k, v, dt, lam, S, out, acc, q_scale, ln, eps):  # pragma: no cover - compiled
    """Rows ``b0:b1``: per token and head, decay ``exp(lam_h·dt)`` once, then one pass over the head's
    ``[K, V]`` state doing decay, rank-one update and read-out (into the scratch ``acc [V]``, allocated
    once per chunk by the caller); ``ln``: per-head layer norm of the read-out."""
    T, H, K = q.shape[1], q.shape[2], q.shape[3]
    V = v.shape[3]
    for b in range(b0, b1):
        for t in range(T):
            d = dt[b, t]
            for h in range(H):
                g = np.float32(math.exp(lam[h] * d))
                vv = v[b, t, h]
                for j in range(V):
                    acc[j] = np.float32(0.0)
                for i in range(K):
                    qi = q[b, t, h, i] * q_scale
                    ki = k[b, t, h, i]
                    Si = S[b, h, i]
                    for j in range(V):
                        s = Si[j] * g + ki * vv[j]
                        Si[j] = s
                        acc[j] += qi * s
                o = out[b, t, h]
                if ln:
                    m = np.float32(0.0)
                    for j in range(V):
                        m += acc[j]
                    m /= V
                    var = np.float32(0.0)
                    for j in range(V):
                        c = acc[j] - m
                        var += c * c
                    r = np.float32(1.0) / np.float32(math.sqrt(var / V + eps))
                    for j in range(V):
                        o[j] = (acc[j] - m) * r
                else:
                    for j in range(V):
                        o[j] = acc[j]


CHUNKS_PER_THREAD = 16  # row chunks per thread in the threaded kernels (load balance on a shared machine)


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _threaded(q, k, v, dt, lam, S, out, q_scale, ln, eps, nc):  # pragma: no cover - compiled
    n = q.shape[0]
    step = (n + nc - 1) // nc
    for c in prange(nc):
        acc = np.empty(v.shape[3], np.float32)
        _rows(c * step, min(n, (c + 1) * step), q, k, v, dt, lam, S, out, acc, q_scale, ln, eps)


@numba.njit(fastmath=True, cache=True, nogil=True)
def _serial(q, k, v, dt, lam, S, out, q_scale, ln, eps):  # pragma: no cover - compiled
    acc = np.empty(v.shape[3], np.float32)
    _rows(0, q.shape[0], q, k, v, dt, lam, S, out, acc, q_scale, ln, eps)


def _n_chunks() -> int:
    return CHUNKS_PER_THREAD * numba.get_num_threads()


def fused_retention_kernel(q, k, v, dt, lam, S, out):
    """Threaded fused step (state in place, read-out into ``out``)."""
    _threaded(q, k, v, dt, lam, S, out, np.float32(1.0), False, np.float32(0.0), _n_chunks())


def fused_retention_kernel_serial(q, k, v, dt, lam, S, out):
    """Serial fused step (few rows: no thread start-up)."""
    _serial(q, k, v, dt, lam, S, out, np.float32(1.0), False, np.float32(0.0))


def fused_retention_ln_kernel(q, k, v, dt, lam, S, out, q_scale, eps):
    """As :func:`fused_retention_kernel` with ``q · q_scale`` and a per-head layer norm of the read-out."""
    _threaded(q, k, v, dt, lam, S, out, np.float32(q_scale), True, np.float32(eps), _n_chunks())


def fused_retention_ln_kernel_serial(q, k, v, dt, lam, S, out, q_scale, eps):
    _serial(q, k, v, dt, lam, S, out, np.float32(q_scale), True, np.float32(eps))


def fused_step_numpy(q, k, v, dt, lam, S_in, S_out=None, parallel: bool | None = None, out=None):
    """Run the kernel on numpy float32 arrays; returns ``(out, S_out)``.

    ``S_out=S_in`` updates in place (one read and one write of the state); otherwise ``S_in`` is copied
    into ``S_out`` (a new array when None) first. ``out``: a preallocated ``[B, T, H, V]`` float32 array
    (hot loops), else a new one. ``parallel``: None picks the threaded kernel from
    :data:`PARALLEL_MIN_ROWS` rows on."""
    # q, k, v may be strided views (e.g. slices of a fused qkv projection): the kernel reads them in place
    q, k, v = (np.asarray(a, dtype=np.float32) for a in (q, k, v))
    dt = np.ascontiguousarray(dt, dtype=np.float32)
    lam = np.ascontiguousarray(lam, dtype=np.float32)
    if S_out is None:
        S_out = S_in.copy()
    elif S_out is not S_in:
        np.copyto(S_out, S_in)
    if out is None:
        out = np.empty(v.shape, dtype=np.float32)
    if parallel is None:
        parallel = q.shape[0] >= PARALLEL_MIN_ROWS
    (fused_retention_kernel if parallel else fused_retention_kernel_serial)(q, k, v, dt, lam, S_out, out)
    return out, S_out
