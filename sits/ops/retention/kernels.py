"""Numba CPU kernels for the recurrent retention step (checked against ``naive.py`` in the tests).

The fused step reads each state element once and writes it once: decay, rank-one update and read-out
happen in the same pass, so the step is bound by memory bandwidth (the ``bench encoder`` floor). The new
state goes to ``S_out``, which is either ``S_in`` itself (in place) or a separate array (the old state is
only read: no separate copy pass). Arrays: q, k ``[B, T, H, K]``, v ``[B, T, H, V]``, dt ``[B, T]``,
lam ``[H]``, ``S_in``, ``S_out`` ``[B, H, K, V]`` (C-contiguous), out ``[B, T, H, V]``; all float32.

What makes it fast (each choice was timed against its alternative beside the bandwidth floor): the
innermost loop runs over one state row ``[V]`` with every operand a contiguous 1-D array
indexed by the loop variable only, so LLVM vectorises it — q, k, v may be strided views (slices of one
fused qkv projection: the streaming layer passes those), which is why the head's ``v`` is first copied
into a contiguous scratch vector; the decay ``exp(lam_h · dt)`` is computed once per token and head; the
scratch vectors are allocated once per chunk of rows, not per row.

``layer_norm=True`` is the layer's streaming variant: it also scales ``q`` and applies the per-head layer
norm (no affine) to the read-out, so the retention mixer's whole middle part is one pass.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

PARALLEL_MIN_ROWS = 256  # below this many rows the serial kernel avoids thread start-up costs
MIN_ROWS_PER_CHUNK = 128  # a chunk of rows is the unit of work of one thread
CHUNKS_PER_THREAD = 8  # row chunks per thread (load balance on a shared machine)


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _head_norm(acc, out, b, t, h, inv_v, eps):  # pragma: no cover - compiled
    """``out[b, t, h] = layer_norm(acc)`` (no affine) over one head's ``V`` read-out values."""
    V = acc.shape[0]
    m = np.float32(0.0)
    for j in range(V):
        m += acc[j]
    m *= inv_v
    var = np.float32(0.0)
    for j in range(V):
        c = acc[j] - m
        var += c * c
    r = np.float32(1.0) / np.float32(math.sqrt(var * inv_v + eps))
    for j in range(V):
        out[b, t, h, j] = (acc[j] - m) * r


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _row(s_in, s_out, copy, g, ki, qi, vv, acc):  # pragma: no cover - compiled
    """One state row ``[V]``: decay, rank-one update ``ki · vv``, read-out ``acc += qi · row``, in place
    in ``s_out`` (after copying ``s_in`` there when ``copy``: the row is then in L1, so memory still
    sees one read and one write). Every operand is a contiguous 1-D array indexed by the loop variable
    only, so the loop vectorises; a single update loop, because a second variant reading ``s_in``
    beside it made the compiled kernel twice as slow (measured)."""
    if copy:
        for j in range(vv.shape[0]):
            s_out[j] = s_in[j]
    for j in range(vv.shape[0]):
        s = s_out[j] * g + ki * vv[j]
        s_out[j] = s
        acc[j] += qi * s


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _rows(b0, b1, q, k, v, dt, lam, S_in, S_out, inplace, out, vv, acc, q_scale, ln, eps):  # pragma: no cover - compiled
    """Rows ``b0:b1``, token after token: per head, the decay once, then one pass over the head's ``K``
    state rows of ``V`` values (decay, rank-one update, read-out into ``acc``); the first token reads
    ``S_in``, later ones the state they left in ``S_out``."""
    T, H, K = q.shape[1], q.shape[2], q.shape[3]
    V = v.shape[3]
    inv_v = np.float32(1.0 / V)
    for b in range(b0, b1):
        for t in range(T):
            copy = t == 0 and not inplace  # read S_in, write S_out; else update S_out in place
            d = dt[b, t]
            for h in range(H):
                g = np.float32(math.exp(lam[h] * d))
                for j in range(V):
                    vv[j] = v[b, t, h, j]
                    acc[j] = np.float32(0.0)
                for i in range(K):
                    qi = q[b, t, h, i] * q_scale
                    ki = k[b, t, h, i]
                    _row(S_in[b, h, i], S_out[b, h, i], copy, g, ki, qi, vv, acc)
                if ln:
                    _head_norm(acc, out, b, t, h, inv_v, eps)
                else:
                    for j in range(V):
                        out[b, t, h, j] = acc[j]


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _threaded(q, k, v, dt, lam, S_in, S_out, inplace, out, q_scale, ln, eps, nc):  # pragma: no cover - compiled
    n = q.shape[0]
    step = (n + nc - 1) // nc
    for c in prange(nc):
        vv = np.empty(v.shape[3], np.float32)
        acc = np.empty(v.shape[3], np.float32)
        _rows(c * step, min(n, (c + 1) * step), q, k, v, dt, lam, S_in, S_out, inplace, out, vv, acc, q_scale, ln, eps)


@numba.njit(fastmath=True, cache=True, nogil=True)
def _serial(q, k, v, dt, lam, S_in, S_out, inplace, out, q_scale, ln, eps):  # pragma: no cover - compiled
    vv = np.empty(v.shape[3], np.float32)
    acc = np.empty(v.shape[3], np.float32)
    _rows(0, q.shape[0], q, k, v, dt, lam, S_in, S_out, inplace, out, vv, acc, q_scale, ln, eps)


def _n_chunks(rows: int) -> int:
    return max(1, min(CHUNKS_PER_THREAD * numba.get_num_threads(), rows // MIN_ROWS_PER_CHUNK))


def _checked(S: np.ndarray) -> np.ndarray:
    """A state ``[B, H, K, V]`` as the kernels need it: C-contiguous float32 (each row a 1-D C array)."""
    if S.ndim != 4 or not S.flags.c_contiguous or S.dtype != np.float32:
        raise ValueError("the kernels need C-contiguous float32 [B, H, K, V] states")
    return S


def _is_inplace(S_in: np.ndarray, S_out: np.ndarray) -> bool:
    if S_in.ctypes.data == S_out.ctypes.data and S_in.shape == S_out.shape:
        return True
    if np.may_share_memory(S_in, S_out):
        raise ValueError("S_out must be S_in itself (in place) or a separate array")
    return False


def fused_retention_step(q, k, v, dt, lam, S_in, S_out, out, *, q_scale=1.0, layer_norm=False, eps=1e-5,
                         parallel: bool | None = None) -> None:
    """One fused pass over the rows (numpy float32 arrays, shapes in the module docstring; ``S_in``,
    ``S_out`` ``[B, H, K, V]``, possibly the same array). ``q_scale``: factor on ``q``; ``layer_norm``:
    per-head layer norm (no affine, ``eps``) of the read-out. ``parallel``: None picks the threaded
    kernel from :data:`PARALLEL_MIN_ROWS` rows on."""
    if parallel is None:
        parallel = q.shape[0] >= PARALLEL_MIN_ROWS
    inplace = _is_inplace(S_in, S_out)
    args = (q, k, v, dt, lam, _checked(S_in), _checked(S_out), inplace, out, np.float32(q_scale), bool(layer_norm),
            np.float32(eps))
    if parallel:
        _threaded(*args, _n_chunks(q.shape[0]))
    else:
        _serial(*args)


def fused_step_numpy(q, k, v, dt, lam, S_in, S_out=None, parallel: bool | None = None, out=None):
    """Run the kernel on numpy float32 arrays; returns ``(out, S_out)``.

    ``S_out=S_in`` updates in place (one read and one write of the state); otherwise the new state is
    written into ``S_out`` (a new array when None) while ``S_in`` is only read. ``out``: a preallocated
    ``[B, T, H, V]`` float32 array (hot loops), else a new one. ``parallel``: None picks the threaded
    kernel from :data:`PARALLEL_MIN_ROWS` rows on."""
    q, k, v = (np.asarray(a, dtype=np.float32) for a in (q, k, v))
    dt = np.ascontiguousarray(dt, dtype=np.float32)
    lam = np.ascontiguousarray(lam, dtype=np.float32)
    S_in = np.ascontiguousarray(S_in, dtype=np.float32)
    if S_out is None:
        S_out = np.empty_like(S_in)
    if out is None:
        out = np.empty(v.shape, dtype=np.float32)
    if q.shape[1] == 0:  # no token: the state passes through
        if S_out is not S_in:
            np.copyto(S_out, S_in)
        return out, S_out
    fused_retention_step(q, k, v, dt, lam, S_in, S_out, out, parallel=parallel)
    return out, S_out
