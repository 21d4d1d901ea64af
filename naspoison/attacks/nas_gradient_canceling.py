"""NAS-aware gradient canceling (the poisoning paper §3.2): gradient canceling whose target is the
victim NAS algorithm's own product, so the poisons act on the architecture choice.

* TE-NAS, RoBoT (and any algorithm whose ``gc_target`` is ``"weights"``): the final architecture of
  the best clean trial (highest clean retraining accuracy; ties: lowest seed), trained on clean data;
  θ = its weights and biases.
* P-DARTS (``gc_target = "alphas"``): that trial's converged supernet; θ = the architecture
  parameters (alphas), GradPC applied to them, so the poisons push the alphas themselves.

The poison cell's key holds the victim's algorithm, its parameters, the keys of the clean search
cells it chooses from and the retraining recipe (``run.victims``); the executor runs those clean
trials first.
"""
from __future__ import annotations

import numpy as np

from naspoison.attacks.base import AttackContext, Poison
from naspoison.attacks.gradient_canceling import GCParams, cancel_gradients
from naspoison.data.datasets import ImageData


class NASGradientCanceling:
    name = "nas_gradient_canceling"
    title = "NAS-specific gradient canceling"
    changes = "images"
    targets_algorithm = True   # one poisoned set per victim algorithm
    Params = GCParams

    def poison(self, data: ImageData, budget: float, params: GCParams, rng: np.random.Generator,
               device="cpu", ctx: AttackContext | None = None) -> Poison:
        if ctx is None or ctx.victim is None:
            raise ValueError("nas_gradient_canceling needs a victim (the best clean trial of the attacked "
                             "algorithm); run it through the suite, which resolves it")
        v = ctx.victim
        out = cancel_gradients(v.model, v.named_params, data, budget, params, rng, device, ctx.log)
        out.summary["victim"] = v.info
        return out
