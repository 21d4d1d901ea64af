"""The Evas score of an architecture (Evas §3.4, Eq. 6): the condition number of the **C×C
trigger NTK** — named apart from TE-NAS's N×N ``ntk_cond`` in ``naspoison.nas.metrics``.

Θ = (1/B) Σ_b J_b J_bᵀ, J_b = ∂f(x'_b)/∂θ ∈ R^{C×P}: the logits of the model f at random init on
the triggered images x' = g(x) of a random-init trigger generator g, differentiated w.r.t. the
model's weight tensors (every parameter named ``weight``: conv, linear and BN scales; the generator
is not differentiated). The score is κ(Θ) by ``metrics.kappa`` (float64 eigenvalues; a singular,
non-finite or all-zero Θ gives KAPPA_MAX = 1e12, never NaN or inf), and the architecture's score
is the median over ``inits`` independent (model, generator) initialisations on one batch.
**Lower = more exploitable.**

Choices stated: the model is in eval mode (its BN at init is the identity: running mean 0, var 1),
so each sample's Jacobian is that of the sample's own function, not of the batch's statistics;
the generator produces x' in train mode (batch statistics), under no_grad.

The fast path takes each sample's C×P Jacobian with ``torch.func`` (vmap over samples of a jacrev
over the weights) in chunks; the reference (``trigger_ntk_reference``, tests and benchmark) runs
one forward of the whole batch and one backward per logit.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from naspoison.nas.metrics import kappa, named_weights


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    ids = {id(p) for p in named_weights(model)}
    return {n: p for n, p in model.named_parameters() if id(p) in ids}


def trigger_ntk(model: nn.Module, x: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Θ (float64, C×C) of ``model`` on (already triggered) inputs ``x``; model in eval mode."""
    was = model.training
    model.eval()
    try:
        weights = {n: p.detach() for n, p in _weights(model).items()}
        rest = {n: t.detach() for n, t in list(model.named_parameters()) + list(model.named_buffers())
                if n not in weights}

        def logits(w, xi):  # one sample → [C]
            return functional_call(model, {**rest, **w}, (xi[None],))[0][0]

        per_sample = vmap(jacrev(logits), in_dims=(None, 0))
        theta = None
        for i in range(0, len(x), chunk):
            jac = per_sample(weights, x[i:i + chunk])  # name → [b, C, *shape]
            j = torch.cat([t.flatten(2) for t in jac.values()], 2).double()  # [b, C, P]
            part = torch.einsum("bcp,bdp->cd", j, j)
            theta = part if theta is None else theta + part
        return theta / len(x)
    finally:
        model.train(was)


def trigger_ntk_reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The slow definition: one forward of the batch, one backward per logit (B·C backwards)."""
    was = model.training
    model.eval()
    try:
        params = named_weights(model)
        out = model(x)[0]
        b, c = out.shape
        theta = torch.zeros(c, c, dtype=torch.float64)
        for i in range(b):
            rows = []
            for k in range(c):
                g = torch.autograd.grad(out[i, k], params, retain_graph=True, allow_unused=True)
                rows.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                                       for gi, p in zip(g, params)]).double())
            j = torch.stack(rows)
            theta += j @ j.T
        return theta / b
    finally:
        model.train(was)


@torch.no_grad()
def triggered(generator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was = generator.training
    generator.train()
    try:
        return generator(x)
    finally:
        generator.train(was)


def trigger_ntk_cond(model: nn.Module, generator: nn.Module, x01: torch.Tensor, normalise, chunk: int = 8) -> float:
    """κ of the trigger NTK for one (model, generator) pair; ``x01`` images on [0, 1], ``normalise``
    maps them to the model's input scale."""
    return kappa(trigger_ntk(model, normalise(triggered(generator, x01)), chunk))
