"""Fused multiplicative-update kernel for float32 W on the CPU: one pass over W per MU step.

Lee-Seung's V-then-H step (paper eq. 8) needs ``W H^T`` for the V update and ``V^T W`` with the
*new* V for the H update, so a plain loop reads W twice per step. Row i of the new V depends only
on row i of ``W H^T``, so one sweep over blocks of 8 rows can do both: for a block ``W_p`` (read
once from memory or L3, then reused from L1/L2)

    A = W_p H^T;  V_p <- V_p * A / (V_p G + eps)  with G = H H^T;  B += V_p^T W_p;  C += V_p^T V_p

and after the sweep ``H <- H * B / (C H + eps)``. These are the updates of eq. (8); only the order
in which the products are summed differs from the plain loop.

Determinism: the rows of a matrix are split into groups whose number depends only on its shape,
never on the thread count; one thread sweeps one group into its own partial B and C, and the
partials are added in group order. Every sum therefore runs in the same order on any number of
threads, and the factors and the residual (also computed here, in a fixed order) are bitwise
independent of the thread count (tested). Summation order still depends on the compiled code (the
CPU's vector width), so results may differ in the last bits between machines.

Needs numba (``pip install "yopo[fast]"``). Compiled on first use (about 10-20 s) and cached on disk
by numba; every later process pays ``import numba``, numba's initialization and loading the cached
code once (2.6-3.2 s measured on the shared 2-core dev machine under load ~10; see
docs/performance.md). Import this module only through
:func:`yopo.methods.yopo.hardware.fused_kernel`, which returns None when numba is missing.
"""
from __future__ import annotations

import numba
import numpy as np
import torch

# Floating-point freedoms given to LLVM: reassociation (vectorized sums) and contraction (FMA).
# Not 'arcp'/'afn' (approximate reciprocals/functions) and not 'nnan'/'ninf'.
_FM = {"reassoc", "contract"}
_JIT = dict(fastmath=_FM, boundscheck=False, nogil=True, cache=True, error_model="numpy")

ROWS = 8  # rows per block: 8 accumulators in the W H^T sweep, 8 W rows per B update
JB = 384  # columns per block: 8 rows x 384 floats (12 KiB) + 7 rows of H or B (10.5 KiB) stay in L1 (32 KiB)
MIN_GROUP_ROWS = 64
JCHUNK = 512  # columns per task of the H update
MAX_GROUPS = 16


def groups_for(o: int) -> tuple[int, int]:
    """(number of row groups, rows per group) of an (o, d) matrix: a function of o only, so the
    reduction order never depends on the thread count. Groups are multiples of ``ROWS`` rows."""
    per = max(MIN_GROUP_ROWS, -(-o // MAX_GROUPS))
    per = -(-per // ROWS) * ROWS
    return -(-o // per), per


@numba.njit(**_JIT)
def _gram_cols(H, j0, j1, G):
    """G = H[:, j0:j1] H[:, j0:j1]^T for H (r, d): one column chunk's part of H H^T."""
    r = H.shape[0]
    for k in range(r):
        for l in range(k + 1):
            s = np.float32(0.0)
            for j in range(j0, j1):
                s += H[k, j] * H[l, j]
            G[k, l] = s
            G[l, k] = s


@numba.njit(**_JIT)
def _wht8(W, H, i, a):
    """a[q, k] = sum_j W[i + q, j] H[k, j] for q < 8: eight accumulators per column block, so each
    load of H serves eight rows. Written on 1-D row views: LLVM vectorizes these loops (on 2-D
    indexing with a blocked range it did not)."""
    r, d = H.shape
    for q in range(ROWS):
        for k in range(r):
            a[q, k] = 0.0
    for j0 in range(0, d, JB):
        j1 = min(d, j0 + JB)
        n = j1 - j0
        w0 = W[i, j0:j1]
        w1 = W[i + 1, j0:j1]
        w2 = W[i + 2, j0:j1]
        w3 = W[i + 3, j0:j1]
        w4 = W[i + 4, j0:j1]
        w5 = W[i + 5, j0:j1]
        w6 = W[i + 6, j0:j1]
        w7 = W[i + 7, j0:j1]
        for k in range(r):
            h = H[k, j0:j1]
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s2 = np.float32(0.0)
            s3 = np.float32(0.0)
            s4 = np.float32(0.0)
            s5 = np.float32(0.0)
            s6 = np.float32(0.0)
            s7 = np.float32(0.0)
            for j in range(n):
                x = h[j]
                s0 += w0[j] * x
                s1 += w1[j] * x
                s2 += w2[j] * x
                s3 += w3[j] * x
                s4 += w4[j] * x
                s5 += w5[j] * x
                s6 += w6[j] * x
                s7 += w7[j] * x
            a[0, k] += s0
            a[1, k] += s1
            a[2, k] += s2
            a[3, k] += s3
            a[4, k] += s4
            a[5, k] += s5
            a[6, k] += s6
            a[7, k] += s7


@numba.njit(**_JIT)
def _wht1(W, H, i, a, q):
    """a[q, k] = sum_j W[i, j] H[k, j] (the rows left over after the blocks of 8)."""
    r, d = H.shape
    for k in range(r):
        s = np.float32(0.0)
        for j in range(d):
            s += W[i, j] * H[k, j]
        a[q, k] = s


@numba.njit(**_JIT)
def _vtw8(W, V, i, B):
    """B[k, :] += sum_{q < 8} V[i + q, k] W[i + q, :]: one load and store of B per eight rows; by
    column blocks, so the eight rows' block stays in L1 for all r rows of B (1-D views, as above)."""
    r, d = B.shape
    for j0 in range(0, d, JB):
        j1 = min(d, j0 + JB)
        n = j1 - j0
        w0 = W[i, j0:j1]
        w1 = W[i + 1, j0:j1]
        w2 = W[i + 2, j0:j1]
        w3 = W[i + 3, j0:j1]
        w4 = W[i + 4, j0:j1]
        w5 = W[i + 5, j0:j1]
        w6 = W[i + 6, j0:j1]
        w7 = W[i + 7, j0:j1]
        for k in range(r):
            b = B[k, j0:j1]
            v0 = V[i, k]
            v1 = V[i + 1, k]
            v2 = V[i + 2, k]
            v3 = V[i + 3, k]
            v4 = V[i + 4, k]
            v5 = V[i + 5, k]
            v6 = V[i + 6, k]
            v7 = V[i + 7, k]
            for j in range(n):
                b[j] += (v0 * w0[j] + v1 * w1[j] + v2 * w2[j] + v3 * w3[j]
                         + v4 * w4[j] + v5 * w5[j] + v6 * w6[j] + v7 * w7[j])


@numba.njit(**_JIT)
def _vtw1(W, V, i, B):
    r, d = B.shape
    for k in range(r):
        v = V[i, k]
        for j in range(d):
            B[k, j] += v * W[i, j]


@numba.njit(**_JIT)
def _sweep(W, V, H, G, B, C, lo, hi, eps, a):
    """The V update of rows [lo, hi) and their contributions B = V^T W, C = V^T V (new V)."""
    r = H.shape[0]
    B[:] = 0.0
    C[:] = 0.0
    i = lo
    while i < hi:
        n = min(ROWS, hi - i)
        if n == ROWS:
            _wht8(W, H, i, a)
        else:
            for q in range(n):
                _wht1(W, H, i + q, a, q)
        for q in range(n):
            # the denominator uses the old row of V: compute all r ratios before updating it
            for k in range(r):
                s = np.float32(0.0)
                for l in range(r):
                    s += V[i + q, l] * G[l, k]
                a[q, k] = a[q, k] / (s + eps)
            for k in range(r):
                V[i + q, k] *= a[q, k]
        if n == ROWS:
            _vtw8(W, V, i, B)
        else:
            for q in range(n):
                _vtw1(W, V, i + q, B)
        for q in range(n):
            for k in range(r):
                vk = V[i + q, k]
                for l in range(r):
                    C[k, l] += vk * V[i + q, l]
        i += n


@numba.njit(parallel=True, **_JIT)
def _mu(W, V, H, iters, eps, ngroups, per, jchunk):
    """``iters`` fused MU steps on a batch W (n, o, d), V (n, o, r), H (n, r, d), in place.

    Two parallel loops per step: the row sweep (tasks = row groups), then the H update (tasks =
    column chunks), which also forms its chunk's part of the next step's H H^T. Partial sums are
    always added in group / chunk order."""
    n, o, d = W.shape
    r = H.shape[1]
    nj = -(-d // jchunk)
    Bp = np.empty((n, ngroups, r, d), np.float32)
    Cp = np.empty((n, ngroups, r, r), np.float32)
    Gp = np.empty((n, nj, r, r), np.float32)
    G = np.empty((n, r, r), np.float32)
    for t in numba.prange(n * nj):
        b = t // nj
        c = t % nj
        _gram_cols(H[b], c * jchunk, min(d, (c + 1) * jchunk), Gp[b, c])
    for _ in range(iters):
        for b in range(n):
            G[b] = Gp[b, 0]
            for c in range(1, nj):
                G[b] += Gp[b, c]
        for t in numba.prange(n * ngroups):
            b = t // ngroups
            g = t % ngroups
            a = np.empty((ROWS, r), np.float32)
            _sweep(W[b], V[b], H[b], G[b], Bp[b, g], Cp[b, g], g * per, min(o, (g + 1) * per), eps, a)
        for t in numba.prange(n * nj):
            b = t // nj
            c = t % nj
            j0 = c * jchunk
            j1 = min(d, j0 + jchunk)
            m = j1 - j0
            C = Cp[b, 0].copy()
            for g in range(1, ngroups):
                C += Cp[b, g]
            Bs = Bp[b, 0, :, j0:j1].copy()
            for g in range(1, ngroups):
                Bs += Bp[b, g, :, j0:j1]
            # D = C H[:, chunk] with the old H, as r vectorized passes (a scalar sum over l per
            # column would be a chain of r dependent FMAs per entry), then H <- H * B / (D + eps)
            D = np.zeros((r, m), np.float32)
            for k in range(r):
                dk = D[k]
                for l in range(r):
                    ckl = C[k, l]
                    hl = H[b, l, j0:j1]
                    for j in range(m):
                        dk[j] += ckl * hl[j]
            for k in range(r):
                hk = H[b, k, j0:j1]
                bk = Bs[k]
                dk = D[k]
                for j in range(m):
                    hk[j] = hk[j] * (bk[j] / (dk[j] + eps))
            _gram_cols(H[b], j0, j1, Gp[b, c])


@numba.njit(parallel=True, **_JIT)
def _residual(W, V, H, S):
    """S = |V H - W| for a batch, each entry summed over k in order 0..r-1."""
    n, o, d = W.shape
    r = H.shape[1]
    for t in numba.prange(n * o):
        b = t // o
        i = t % o
        for j in range(d):
            S[b, i, j] = V[b, i, 0] * H[b, 0, j]
        for k in range(1, r):
            v = V[b, i, k]
            for j in range(d):
                S[b, i, j] += v * H[b, k, j]
        for j in range(d):
            S[b, i, j] = abs(S[b, i, j] - W[b, i, j])


class _NumbaThreads:
    """Run numba's parallel loops on torch's intra-op thread count (numba keeps its own pool)."""

    def __enter__(self):
        self.old = numba.get_num_threads()
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))

    def __exit__(self, *exc):
        numba.set_num_threads(self.old)


def _arrays(*ts: torch.Tensor):
    for t in ts:
        if t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous():
            raise ValueError("the fused kernel takes contiguous float32 CPU tensors; got "
                             f"{t.dtype} on {t.device} (contiguous={t.is_contiguous()})")
    return [t.numpy() for t in ts]


def mu_frobenius(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor, iters: int, eps: float) -> None:
    """In place: ``iters`` MU steps of eq. (8) on W (B, o, d), V (B, o, r), H (B, r, d), all
    contiguous float32 on the CPU (same contract as :func:`yopo.methods.yopo.nmf.mu_frobenius`)."""
    Wn, Vn, Hn = _arrays(W, V, H)
    if V.shape[-1] == 0 or iters <= 0:
        return
    ngroups, per = groups_for(W.shape[1])
    with _NumbaThreads():
        _mu(Wn, Vn, Hn, int(iters), np.float32(eps), ngroups, per, JCHUNK)


def residual(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """S = |W - V H| (B, o, d), summed in a fixed order (bitwise independent of the thread count)."""
    Wn, Vn, Hn = _arrays(W, V, H)
    S = torch.empty_like(W)
    if V.shape[-1] == 0:
        return S.copy_(W.abs())
    with _NumbaThreads():
        _residual(Wn, Vn, Hn, S.numpy())
    return S
