"""Batched nonnegative matrix factorization by Lee-Seung multiplicative updates.

Every function takes a batch of matrices ``W`` of shape (B, o, d) (B layers of the same shape, or
the rows of one layer for the per-output-channel variant) and returns factors ``V`` (B, o, r) and
``H`` (B, r, d) with ``V, H >= 0``. Updates follow the paper's eq. (8): V first, then H, with
``eps`` added to every denominator. Work buffers are allocated once per call, not per iteration.
"""
from __future__ import annotations

import torch

LOSSES = ("frobenius", "kl", "is")
INITS = ("uniform", "nndsvd", "nndsvda")


def init_factors(W: torch.Tensor, rank: int, init: str, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial factors for a batch. ``seeds[b]`` seeds matrix b (uniform init).

    Uniform draws i.i.d. U[0, 1) from a CPU generator per matrix, so the same seed gives the same
    factors on every device and whatever else is in the batch.
    """
    B, o, d = W.shape
    if init == "uniform":
        Vs, Hs = [], []
        for s in seeds:
            g = torch.Generator().manual_seed(int(s))
            Vs.append(torch.rand(o, rank, generator=g))
            Hs.append(torch.rand(rank, d, generator=g))
        V = torch.stack(Vs).to(device=W.device, dtype=W.dtype)
        H = torch.stack(Hs).to(device=W.device, dtype=W.dtype)
        return V, H
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
    return V.to(W.dtype), H.to(W.dtype)


def mu_frobenius(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor, iters: int, eps: float) -> None:
    """In-place Euclidean MU: V <- V*(W H^T)/(V H H^T + eps); H <- H*(V^T W)/(V^T V H + eps)."""
    B, o, d = W.shape
    r = V.shape[-1]
    Wt = W.transpose(1, 2)
    num_v = W.new_empty(B, o, r)
    den_v = W.new_empty(B, o, r)
    num_h = W.new_empty(B, d, r)  # (V^T W)^T, computed as W^T V to keep a row-major W
    den_h = W.new_empty(B, d, r)
    gram = W.new_empty(B, r, r)
    Ht = H.transpose(1, 2).contiguous()  # work with H^T (B, d, r): both products read W once
    for _ in range(iters):
        torch.bmm(W, Ht, out=num_v)
        torch.bmm(Ht.transpose(1, 2), Ht, out=gram)
        torch.bmm(V, gram, out=den_v)
        V.mul_(num_v.div_(den_v.add_(eps)))
        torch.bmm(Wt, V, out=num_h)
        torch.bmm(V.transpose(1, 2), V, out=gram)
        torch.bmm(Ht, gram, out=den_h)
        Ht.mul_(num_h.div_(den_h.add_(eps)))
    H.copy_(Ht.transpose(1, 2))


def mu_kl(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor, iters: int, eps: float) -> None:
    """In-place MU for the generalized KL divergence D(W || VH) (Lee & Seung 2001)."""
    for _ in range(iters):
        R = W / (torch.bmm(V, H) + eps)
        V.mul_(torch.bmm(R, H.transpose(1, 2)) / (H.sum(dim=2).unsqueeze(1) + eps))
        R = W / (torch.bmm(V, H) + eps)
        H.mul_(torch.bmm(V.transpose(1, 2), R) / (V.sum(dim=1).unsqueeze(2) + eps))


def mu_is(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor, iters: int, eps: float) -> None:
    """In-place MU for the Itakura-Saito divergence (Fevotte et al. 2009, beta = 0)."""
    for _ in range(iters):
        P = torch.bmm(V, H) + eps
        V.mul_(torch.bmm(W / P.square(), H.transpose(1, 2)) / (torch.bmm(1.0 / P, H.transpose(1, 2)) + eps))
        P = torch.bmm(V, H) + eps
        H.mul_(torch.bmm(V.transpose(1, 2), W / P.square()) / (torch.bmm(V.transpose(1, 2), 1.0 / P) + eps))


UPDATES = {"frobenius": mu_frobenius, "kl": mu_kl, "is": mu_is}


def nmf(W: torch.Tensor, rank: int, iters: int, *, init: str = "uniform", loss: str = "frobenius",
        eps: float = 1e-8, seeds: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Factor a batch ``W`` (B, o, d) >= 0 into V (B, o, rank), H (B, rank, d)."""
    if W.dim() != 3:
        raise ValueError(f"W must have shape (B, o, d); got {tuple(W.shape)}")
    if loss not in UPDATES:
        raise ValueError(f"loss={loss!r} is not allowed; choose one of {list(LOSSES)}")
    seeds = list(range(W.shape[0])) if seeds is None else seeds
    V, H = init_factors(W, rank, init, seeds)
    UPDATES[loss](W, V, H, iters, eps)
    return V, H


def nmf_reference(W: torch.Tensor, rank: int, iters: int, *, seed: int, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain textbook loop for one (o, d) matrix, uniform init: the baseline the engine is
    checked and timed against (benchmarks/saliency_speed.py)."""
    g = torch.Generator().manual_seed(int(seed))
    V = torch.rand(W.shape[0], rank, generator=g).to(W)
    H = torch.rand(rank, W.shape[1], generator=g).to(W)
    for _ in range(iters):
        V = V * (W @ H.T) / (V @ H @ H.T + eps)
        H = H * (V.T @ W) / (V.T @ V @ H + eps)
    return V, H
