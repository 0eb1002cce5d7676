"""Numba CPU kernels for the recurrent retention step (checked against ``naive.py`` in the tests).

The fused step updates the state IN PLACE and reads each state element once and writes it once: decay,
rank-one update and read-out happen in the same pass, so the step is bound by memory bandwidth (the
``bench encoder`` floor). Arrays: q, k ``[B, T, H, K]``, v ``[B, T, H, V]``, dt ``[B, T]``, lam ``[H]``,
S ``[B, H, K, V]`` (C-contiguous), out ``[B, T, H, V]``; all float32.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

PARALLEL_MIN_ROWS = 256  # below this many rows the serial kernel avoids thread start-up costs


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _row(b, q, k, v, dt, lam, S, out):  # pragma: no cover - compiled
    T, H, K = q.shape[1], q.shape[2], q.shape[3]
    V = v.shape[3]
    for h in range(H):
        for t in range(T):
            g = np.float32(math.exp(lam[h] * dt[b, t]))
            acc = np.zeros(V, np.float32)
            vv = v[b, t, h]
            for i in range(K):
                qi = q[b, t, h, i]
                ki = k[b, t, h, i]
                Si = S[b, h, i]
                for j in range(V):
                    s = Si[j] * g + ki * vv[j]
                    Si[j] = s
                    acc[j] += qi * s
            for j in range(V):
                out[b, t, h, j] = acc[j]


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def fused_retention_kernel(q, k, v, dt, lam, S, out):  # pragma: no cover - compiled
    for b in prange(q.shape[0]):
        _row(b, q, k, v, dt, lam, S, out)


@numba.njit(fastmath=True, cache=True, nogil=True)
def fused_retention_kernel_serial(q, k, v, dt, lam, S, out):  # pragma: no cover - compiled
    for b in range(q.shape[0]):
        _row(b, q, k, v, dt, lam, S, out)


def fused_step_numpy(q, k, v, dt, lam, S_in, S_out=None, parallel: bool | None = None):
    """Run the kernel on numpy float32 arrays; returns ``(out, S_out)``.

    ``S_out=S_in`` updates in place (one read and one write of the state); otherwise ``S_in`` is copied
    into ``S_out`` (a new array when None) first. ``parallel``: None picks the threaded kernel from
    :data:`PARALLEL_MIN_ROWS` rows on."""
    # q, k, v may be strided views (e.g. slices of a fused qkv projection): the kernel reads them in place
    q, k, v = (np.asarray(a, dtype=np.float32) for a in (q, k, v))
    dt = np.ascontiguousarray(dt, dtype=np.float32)
    lam = np.ascontiguousarray(lam, dtype=np.float32)
    if S_out is None:
        S_out = S_in.copy()
    elif S_out is not S_in:
        np.copyto(S_out, S_in)
    out = np.empty(v.shape, dtype=np.float32)
    if parallel is None:
        parallel = q.shape[0] >= PARALLEL_MIN_ROWS
    (fused_retention_kernel if parallel else fused_retention_kernel_serial)(q, k, v, dt, lam, S_out, out)
    return out, S_out
