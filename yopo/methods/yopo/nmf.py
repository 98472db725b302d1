"""Batched nonnegative matrix factorization: the paper's Lee-Seung multiplicative updates, plus
two faster Frobenius solvers.

Every function takes a batch of matrices ``W`` of shape (B, o, d) (B layers of the same shape, or
the rows of one layer for the per-output-channel variant) and returns factors ``V`` (B, o, r) and
``H`` (B, r, d) with ``V, H >= 0``. The default ``mu`` follows the paper's eq. (8): V first, then H,
with ``eps`` added to every denominator. Work buffers are allocated once per call, not per
iteration. ``amu`` (accelerated MU) and ``hals`` (accelerated HALS) reuse each pass over W for
several cheap factor updates (Gillis & Glineur 2012); they reach the objective of 200 MU steps in
far fewer passes, but converge to a (slightly) different factorization. ``W`` may be stored in
bfloat16/float16: the products accumulate in float32 and the factors stay float32.
``nmf_reference`` is the plain per-layer loop the engine is checked and timed against. The fused
one-pass MU kernel for large float32 layers on the CPU is in ``kernel.py`` (needs numba).
"""
from __future__ import annotations

import torch

LOSSES = ("frobenius", "kl", "is")
INITS = ("uniform", "nndsvd", "nndsvda")


def init_factors(W: torch.Tensor, rank: int, init: str, seeds: list[int],
                 shapes: list[tuple[int, int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial factors for a batch. ``seeds[b]`` seeds matrix b (uniform init).

    Uniform draws i.i.d. U[0, 1) from a CPU generator per matrix, so the same seed gives the same
    factors on every device and whatever else is in the batch. ``shapes[b]`` = (o_b, d_b) marks
    matrix b as zero-padded to W's (o, d): its factors are drawn at (o_b, r), (r, d_b), exactly as
    unpadded, and the padding of V and H is zero.
    """
    B, o, d = W.shape
    if init == "uniform":
        V = torch.zeros(B, o, rank)
        H = torch.zeros(B, rank, d)
        for b, s in enumerate(seeds):
            ob, db = shapes[b] if shapes else (o, d)
            g = torch.Generator().manual_seed(int(s))
            V[b, :ob] = torch.rand(ob, rank, generator=g)
            H[b, :, :db] = torch.rand(rank, db, generator=g)
        return V.to(device=W.device, dtype=_factor_dtype(W)), H.to(device=W.device, dtype=_factor_dtype(W))
    if init in ("nndsvd", "nndsvda"):
        return _nndsvd(W, rank, fill=init == "nndsvda")
    raise ValueError(f"init={init!r} is not allowed; choose one of {list(INITS)}")


def _nndsvd(W: torch.Tensor, rank: int, fill: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Nonnegative double SVD (Boutsidis & Gallopoulos 2008), batched.

    ``fill`` replaces exact zeros by the mean of W (NNDSVDa), since multiplicative updates can
    never move a factor entry away from zero.
    """
    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    U, S, Vh = U[..., :rank], S[..., :rank], Vh[..., :rank, :]
    x, y = U, Vh.transpose(-1, -2)  # (B, o, r), (B, d, r)
    xp, xn = x.clamp(min=0), (-x).clamp(min=0)
    yp, yn = y.clamp(min=0), (-y).clamp(min=0)
    nxp, nxn = xp.norm(dim=1), xn.norm(dim=1)  # (B, r)
    nyp, nyn = yp.norm(dim=1), yn.norm(dim=1)
    mp, mn = nxp * nyp, nxn * nyn
    use_p = (mp >= mn).unsqueeze(1)
    xs = torch.where(use_p, xp / nxp.clamp_min(1e-30).unsqueeze(1), xn / nxn.clamp_min(1e-30).unsqueeze(1))
    ys = torch.where(use_p, yp / nyp.clamp_min(1e-30).unsqueeze(1), yn / nyn.clamp_min(1e-30).unsqueeze(1))
    sigma = torch.where(use_p.squeeze(1), mp, mn)
    lam = (S * sigma).sqrt().unsqueeze(1)
    V = lam * xs
    H = (lam * ys).transpose(-1, -2)
    # the leading singular pair of a nonnegative matrix is nonnegative up to sign
    V[..., 0] = S[..., :1].sqrt() * U[..., 0].abs()
    H[..., 0, :] = S[..., :1].sqrt() * Vh[..., 0, :].abs()
    if fill:
        mean = W.double().mean(dim=(1, 2), keepdim=True)
        V = torch.where(V == 0, mean.expand_as(V), V)
        H = torch.where(H == 0, mean.expand_as(H), H)
    return V.to(_factor_dtype(W)), H.to(_factor_dtype(W))


def _factor_dtype(W: torch.Tensor) -> torch.dtype:
    """Factors are float32 for float32 / reduced-precision W (float64 W keeps float64)."""
    return torch.float64 if W.dtype == torch.float64 else torch.float32


class _Products:
    """The two products that read W, with W stored in float32, bfloat16 or float16.

    V is kept transposed, as ``Vt`` (B, r, o), so both products put the rank on the left:
    ``H W^T`` (B, r, o) and ``Vt W`` (B, r, d). On CPU, MKL runs these skinny GEMMs about 1.3x
    faster than ``W H^T`` (B, o, r) (measured: 0.035 vs 0.046 ns per weight and rank on a 512 x 4608
    layer); nothing of size o x d is ever transposed or copied. Factors are float32; for
    reduced-precision storage they are cast to W's dtype for the product (the GEMM accumulates in
    float32 and rounds its small result once), and the result is widened into a float32 buffer.

    Used as a context manager, it also splits the CPU threads: the two products run on all of
    torch's intra-op threads, everything else (the r x r Grams, the (r, o) / (r, d) updates) on one.
    Under ``OMP_WAIT_POLICY=PASSIVE`` every multi-threaded call must wake the sleeping threads,
    which costs more than these small calls themselves (measured: H H^T of a 7 x 4608 H takes
    124 us on 2 threads and a few us on 1; on VGG-19 the small calls were 20% of MU's time).
    """

    def __init__(self, W: torch.Tensor, r: int):
        self.W = W
        self.Wt = W.transpose(1, 2)
        self.low = W.dtype in (torch.bfloat16, torch.float16)
        self.threads = torch.get_num_threads()
        self.split = W.device.type == "cpu" and self.threads > 1
        B, o, d = W.shape
        # reduced-precision W: buffers for the cast factors and the products' results
        self.tmp_v = self.cast_v = self.tmp_h = self.cast_h = None
        if self.low:
            self.tmp_v = W.new_empty(B, r, o)
            self.tmp_h = W.new_empty(B, r, d)
            self.cast_v = W.new_empty(B, r, o)
            self.cast_h = W.new_empty(B, r, d)

    def __enter__(self) -> "_Products":
        if self.split:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc) -> None:
        if self.split:
            torch.set_num_threads(self.threads)

    def _bmm(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if not self.split:
            return torch.bmm(a, b, out=out)
        torch.set_num_threads(self.threads)
        try:
            return torch.bmm(a, b, out=out)
        finally:
            torch.set_num_threads(1)

    def _product(self, left: torch.Tensor, right: torch.Tensor, cast, tmp, out: torch.Tensor) -> torch.Tensor:
        """out = left @ right (right a view of W); reduced-precision W: left cast to W's dtype."""
        if not self.low:
            return self._bmm(left, right, out)
        cast.copy_(left)
        self._bmm(cast, right, tmp)
        return out.copy_(tmp)

    def hwt(self, H: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out = H W^T = (W H^T)^T, shape (B, r, o)."""
        return self._product(H, self.Wt, self.cast_h, self.tmp_v, out)

    def vtw(self, Vt: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out = V^T W, shape (B, r, d), from Vt (B, r, o)."""
        return self._product(Vt, self.W, self.cast_v, self.tmp_h, out)


def _mu_buffers(B: int, o: int, d: int, r: int, like: torch.Tensor):
    """Numerator/denominator buffers of the V^T and H updates and an r x r Gram buffer, allocated
    once per call (not per iteration)."""
    return (like.new_empty(B, r, o), like.new_empty(B, r, o), like.new_empty(B, r, d), like.new_empty(B, r, d),
            like.new_empty(B, r, r))


def mu_frobenius(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor, iters: int, eps: float) -> None:
    """In-place Euclidean MU (paper eq. 8): V <- V*(W H^T)/(V (H H^T) + eps);
    H <- H*(V^T W)/((V^T V) H + eps).

    Run on V^T (the same update transposed: (V G)^T = G V^T as G = H H^T is symmetric), see
    ``_Products``. Two passes over W per step (one per factor; the H update needs the new V, so
    they cannot be merged without changing the algorithm). Every buffer is allocated once.
    """
    B, o, d = W.shape
    r = V.shape[-1]
    prod = _Products(W, r)
    num_v, den_v, num_h, den_h, gram = _mu_buffers(B, o, d, r, V)
    Vt = V.transpose(1, 2).contiguous()
    with prod:  # products on all threads, the rest on one
        for _ in range(iters):
            prod.hwt(H, num_v)
            torch.bmm(H, H.transpose(1, 2), out=gram)
            torch.bmm(gram, Vt, out=den_v)
            Vt.mul_(num_v.div_(den_v.add_(eps)))
            prod.vtw(Vt, num_h)
            torch.bmm(Vt, Vt.transpose(1, 2), out=gram)
            torch.bmm(gram, H, out=den_h)
            H.mul_(num_h.div_(den_h.add_(eps)))
    V.copy_(Vt.transpose(1, 2))


def amu_frobenius(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor, iters: int, eps: float,
                  alpha: float = 1.0, delta: float = 0.1, max_inner: int = 20) -> None:
    """Accelerated MU (Gillis & Glineur 2012): per pass over W, W H^T and H H^T are computed once and
    reused for several cheap V updates (cost O(o r^2) each), then the same for H. The number of
    inner updates is 1 + floor(alpha * rho) with rho = 1 + (o d + d r)/(o r + o) (the cost ratio of
    a pass over W to an inner update), at most ``max_inner``; the inner loop stops early once an
    update changes the factor by less than ``delta`` times the first change (``delta <= 0``: no
    early stop, and no norm per inner update). ``iters`` counts passes over W (outer iterations)."""
    B, o, d = W.shape
    r = V.shape[-1]
    prod = _Products(W, r)
    num_v, den_v, num_h, den_h, gram = _mu_buffers(B, o, d, r, V)
    Vt = V.transpose(1, 2).contiguous()
    step_v = V.new_empty(B, r, o)
    step_h = V.new_empty(B, r, d)
    inner_v = min(max_inner, 1 + int(alpha * (1 + (o * d + d * r) / (o * r + o))))
    inner_h = min(max_inner, 1 + int(alpha * (1 + (o * d + o * r) / (d * r + d))))

    def inner(X, num, den, step, gram, steps):
        # X (B, r, n) is V^T or H; both updates read X <- X * num / (gram X + eps)
        first = None
        for _k in range(steps):
            torch.bmm(gram, X, out=den)
            if steps == 1 or delta <= 0:  # no early stop: the plain update, 4 calls
                X.mul_(torch.div(num, den.add_(eps), out=den))
                continue
            # step = X * (num / den) - X; X += step (X * ratio, written as an increment)
            torch.div(num, den.add_(eps), out=step)
            step.sub_(1.0).mul_(X)
            X.add_(step)
            change = float(torch.linalg.vector_norm(step))
            if first is None:
                first = change
            elif change <= delta * first:
                break

    with prod:  # products on all threads, the rest on one
        for _ in range(iters):
            prod.hwt(H, num_v)
            torch.bmm(H, H.transpose(1, 2), out=gram)
            inner(Vt, num_v, den_v, step_v, gram, inner_v)
            prod.vtw(Vt, num_h)
            torch.bmm(Vt, Vt.transpose(1, 2), out=gram)
            inner(H, num_h, den_h, step_h, gram, inner_h)
    V.copy_(Vt.transpose(1, 2))


def hals_frobenius(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor, iters: int, eps: float,
                   inner: int = 4) -> None:
    """Accelerated HALS (Cichocki & Phan 2009; Gillis & Glineur 2012): exact block-coordinate updates
    of one rank-one component at a time, V[:, k] <- max(eps, V[:, k] + (A[:, k] - V G[:, k]) / G[k, k])
    with A = W H^T and G = H H^T computed once per pass over W and reused for ``inner`` sweeps;
    the same for the rows of H. Factors stay >= eps so the support never dies (a zero entry of V/H
    could not come back to life in MU-style refinements). ``iters`` counts passes over W. Four
    sweeps per pass were fastest to MU-200's objective on ResNet-20 and VGG-19 (2-5 tried).

    Each component update is written as X[k] <- max(eps, A[k]/G[k,k] - M[k] X) with
    M = G / diag(G) and M[k, k] = 0 (the same update, rearranged), so it costs two tensor calls:
    on small layers the solver is bound by the number of calls, not by flops.
    """
    B, o, d = W.shape
    r = V.shape[-1]
    prod = _Products(W, r)
    Vt = V.transpose(1, 2).contiguous()  # (B, r, o): a component of V is a contiguous row
    A_v = V.new_empty(B, r, o)
    A_h = V.new_empty(B, r, d)
    G = V.new_empty(B, r, r)
    tmp_v = V.new_empty(B, 1, o)
    tmp_h = V.new_empty(B, 1, d)

    G_diag = G.diagonal(dim1=1, dim2=2)
    # per-component views, made once (on small layers a view costs as much as a product)
    rows_v = [(Vt[:, k : k + 1], A_v[:, k : k + 1], G[:, k : k + 1]) for k in range(r)]
    rows_h = [(H[:, k : k + 1], A_h[:, k : k + 1], G[:, k : k + 1]) for k in range(r)]

    def sweep(X, A, tmp, rows):
        """``inner`` sweeps over the components of X (B, r, n) = V^T or H, with A (B, r, n) and
        G (B, r, r) of the current pass (both rescaled in place here)."""
        Gd = G_diag.clamp_min(eps).unsqueeze(-1)  # (B, r, 1)
        A.div_(Gd)
        G.div_(Gd)
        G_diag.zero_()
        for _s in range(inner):
            for x, a, m in rows:
                torch.baddbmm(a, m, X, alpha=-1.0, out=tmp)
                torch.clamp_min(tmp, eps, out=x)

    with prod:  # products on all threads, the rest on one
        for it in range(iters):
            prod.hwt(H, A_v)  # (W H^T)^T
            torch.bmm(H, H.transpose(1, 2), out=G)
            if it == 0:
                # Rescale the init so V H has W's scale: s = <W, VH> / ||VH||^2 (the best multiple).
                # A U[0,1) init is far too large for |W| of a fan-in-scaled layer; unscaled, a first
                # sweep can pin whole components at eps, which come back only through near-singular
                # steps (dividing by G[k, k] ~ eps).
                num = (Vt * A_v).sum(dim=(1, 2), keepdim=True)
                den = (torch.bmm(Vt, Vt.transpose(1, 2)) * G).sum(dim=(1, 2), keepdim=True)
                Vt.mul_(num / den.clamp_min(eps))
            sweep(Vt, A_v, tmp_v, rows_v)
            prod.vtw(Vt, A_h)  # V^T W
            torch.bmm(Vt, Vt.transpose(1, 2), out=G)
            sweep(H, A_h, tmp_h, rows_h)
    V.copy_(Vt.transpose(1, 2))


def mu_kl(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor, iters: int, eps: float) -> None:
    """In-place MU for the generalized KL divergence D(W || VH) (Lee & Seung 2001).
    Work buffers (including the (B, o, d) ratio) are allocated once."""
    Wf = W.float() if W.dtype != V.dtype else W
    B, o, d = W.shape
    r = V.shape[-1]
    R = V.new_empty(B, o, d)
    num_v = V.new_empty(B, o, r)
    num_h = V.new_empty(B, r, d)
    for _ in range(iters):
        torch.bmm(V, H, out=R)
        torch.div(Wf, R.add_(eps), out=R)
        torch.bmm(R, H.transpose(1, 2), out=num_v)
        V.mul_(num_v.div_(H.sum(dim=2).unsqueeze(1).add_(eps)))
        torch.bmm(V, H, out=R)
        torch.div(Wf, R.add_(eps), out=R)
        torch.bmm(V.transpose(1, 2), R, out=num_h)
        H.mul_(num_h.div_(V.sum(dim=1).unsqueeze(2).add_(eps)))


def mu_is(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor, iters: int, eps: float) -> None:
    """In-place MU for the Itakura-Saito divergence (Fevotte et al. 2009, beta = 0).
    Work buffers (two (B, o, d) ones) are allocated once."""
    Wf = W.float() if W.dtype != V.dtype else W
    B, o, d = W.shape
    r = V.shape[-1]
    P = V.new_empty(B, o, d)
    Q = V.new_empty(B, o, d)
    num_v, den_v = V.new_empty(B, o, r), V.new_empty(B, o, r)
    num_h, den_h = V.new_empty(B, r, d), V.new_empty(B, r, d)
    for _ in range(iters):
        torch.bmm(V, H, out=P)
        P.add_(eps).reciprocal_()  # 1/P
        torch.mul(Wf, P, out=Q).mul_(P)  # W/P^2
        torch.bmm(Q, H.transpose(1, 2), out=num_v)
        torch.bmm(P, H.transpose(1, 2), out=den_v)
        V.mul_(num_v.div_(den_v.add_(eps)))
        torch.bmm(V, H, out=P)
        P.add_(eps).reciprocal_()
        torch.mul(Wf, P, out=Q).mul_(P)
        torch.bmm(V.transpose(1, 2), Q, out=num_h)
        torch.bmm(V.transpose(1, 2), P, out=den_h)
        H.mul_(num_h.div_(den_h.add_(eps)))


UPDATES = {"frobenius": mu_frobenius, "kl": mu_kl, "is": mu_is}
SOLVERS = ("mu", "amu", "hals")
FAST_SOLVERS = {"amu": amu_frobenius, "hals": hals_frobenius}  # Frobenius loss only


def get_update(loss: str, solver: str = "mu"):
    """The in-place update ``fn(W, V, H, iters, eps)`` for a loss and solver."""
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r} is not allowed; choose one of {list(SOLVERS)}")
    if loss not in UPDATES:
        raise ValueError(f"loss={loss!r} is not allowed; choose one of {list(LOSSES)}")
    if solver == "mu":
        return UPDATES[loss]
    if loss != "frobenius":
        raise ValueError(f"solver={solver!r} supports loss='frobenius' only; got loss={loss!r}")
    return FAST_SOLVERS[solver]


def objective(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """||W - V H||_F^2 per matrix of the batch (float64)."""
    return (W.double() - V.double() @ H.double()).square().sum(dim=(-2, -1))


def nmf(W: torch.Tensor, rank: int, iters: int, *, init: str = "uniform", loss: str = "frobenius",
        eps: float = 1e-8, seeds: list[int] | None = None, solver: str = "mu") -> tuple[torch.Tensor, torch.Tensor]:
    """Factor a batch ``W`` (B, o, d) >= 0 into float32 V (B, o, rank), H (B, rank, d).

    ``W`` may be stored in bfloat16/float16 (products accumulate in float32, factors stay float32).
    """
    if W.dim() != 3:
        raise ValueError(f"W must have shape (B, o, d); got {tuple(W.shape)}")
    update = get_update(loss, solver)
    seeds = list(range(W.shape[0])) if seeds is None else seeds
    V, H = init_factors(W, rank, init, seeds)
    update(W, V, H, iters, eps)
    return V, H


def nmf_reference(W: torch.Tensor, rank: int, iters: int, *, seed: int, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain per-layer loop of eq. (8) for one (o, d) matrix, uniform init: the correctness
    reference of the engine (tests) and the fair baseline it is timed against
    (benchmarks/saliency_speed.py).

    Written the way a careful user would: the rank-r Grams are formed first, ``V @ (H @ H.T)`` and
    ``(V.T @ V) @ H``, so each step reads W twice (``W @ H.T``, ``V.T @ W``) and never forms the
    o x d product ``V @ H`` (left-to-right evaluation, ``V @ H @ H.T``, forms it twice per step and
    is several times slower on large layers)."""
    g = torch.Generator().manual_seed(int(seed))
    V = torch.rand(W.shape[0], rank, generator=g).to(W)
    H = torch.rand(rank, W.shape[1], generator=g).to(W)
    for _ in range(iters):
        V = V * (W @ H.T) / (V @ (H @ H.T) + eps)
        H = H * (V.T @ W) / ((V.T @ V) @ H + eps)
    return V, H
