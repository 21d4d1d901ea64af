"""Fine-Pruning (Liu et al., RAID 2018): a backdoor tends to live in neurons that clean data leaves
dormant; prune them, then fine-tune.

Pruned here: the **inputs of the final linear layer** (the pooled features the classifier reads), so
one rule serves DARTS, NB201 and ResNet networks alike (the paper's "last convolutional layer" has no
single meaning in a cell-based network). Channels are ranked by their mean activation on
``samples`` clean training images (ascending) and masked progressively: the prune curve gives ACC
and ASR at every fraction in ``fractions``, computed from the cached features (one forward of the
data, then a masked matrix product per point, which equals masking inside the network because the
layer is linear). The pruning level kept is the largest fraction whose clean ACC stays within
``max_acc_drop`` (4 points, the paper's stopping rule) of the unpruned ACC; a **copy** of the model
with that mask (a forward pre-hook on the final layer) is fine-tuned on clean training data
(``finetune``, the Evas fine-tuning recipe shortened to ``finetune.epochs``), and ACC/ASR are
measured again. The suspect model itself is never changed.

Measured (tests' planted 16x16 digits model, white 3x3 patch): the chosen pruning takes ASR from 100 % to
14.5 %, yet clean fine-tuning of the pruned copy restores it (100 % after one epoch at lr 0.01). The
pruned channels are zero, but triggered images drive the kept channels low, and the re-fitted
classifier maps such quiet features to the target; both points are reported, never only the better one.
"""
from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
from pydantic import Field

from naspoison.backdoor.scenarios import FinetuneRecipe
from naspoison.defenses.base import BackdoorDefense, Suspect, mean_sd
from naspoison.params import StrictParams
from naspoison.train import fit
from naspoison._lazy import lazy, no_grad

torch = lazy("torch", globals())
nn = lazy("torch.nn", globals())


class FinePruningParams(StrictParams):
    samples: int = Field(1000, gt=0, description="clean training images that rank the channels")
    fractions: list[float] = Field(default_factory=lambda: [i / 20 for i in range(20)])
    max_acc_drop: float = Field(0.04, ge=0, le=1)
    finetune: FinetuneRecipe = Field(default_factory=lambda: FinetuneRecipe(epochs=10))
    seed: int = 0


def final_linear(model: nn.Module) -> nn.Linear:
    for name in ("classifier", "linear", "fc"):
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Linear):
            return layer
    raise TypeError(f"{type(model).__name__}: no final linear layer named classifier, linear or fc")


@no_grad
def features(s: Suspect, x01: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """The inputs of the final linear layer for ``x01`` (eval mode)."""
    layer, got = final_linear(s.model), []
    hook = layer.register_forward_pre_hook(lambda m, inp: got.append(inp[0].detach().flatten(1)))
    try:
        for i in range(0, len(x01), batch):
            s.logits(x01[i:i + batch])
    finally:
        hook.remove()
    return torch.cat(got)


class FinePruning(BackdoorDefense):
    """Prune the channels clean inputs leave dormant, then fine-tune on clean data (Evas Table 5)."""

    name = "fine_pruning"
    title = "Fine-Pruning"
    table = "Fine-Pruning (Evas Table 5)"
    note = "ACC and ASR in percent, mean over training seeds"
    STEPS = (("before", "before"), ("chosen", "pruned"), ("after", "fine-tuned"))
    Params = FinePruningParams

    def run(self, suspect: Suspect, params: FinePruningParams, log: Callable[[str], None] | None = None) -> dict:
        log = log or (lambda m: None)
        layer = final_linear(suspect.model)
        rng = np.random.default_rng([params.seed, 0xF9])
        n = len(suspect.data.x_train)
        rank_idx = np.sort(rng.choice(n, min(params.samples, n), replace=False))
        order = torch.argsort(features(suspect, suspect.images("train", rank_idx)).mean(0), stable=True)  # dormant first
        x, y = suspect.images("test"), suspect.labels("test")
        keep = y != suspect.target
        f_clean, f_trig = features(suspect, x), features(suspect, suspect.triggered(x[keep]))
        d = f_clean.shape[1]

        def masked(k: int) -> torch.Tensor:
            m = torch.ones(d, device=suspect.device)
            m[order[:k]] = 0
            return m

        def point(k: int) -> dict:
            m = masked(k)
            acc = ((f_clean * m) @ layer.weight.T + layer.bias).argmax(1).eq(y).float().mean().item()
            asr = ((f_trig * m) @ layer.weight.T + layer.bias).argmax(1).eq(suspect.target).float().mean().item()
            return {"fraction": k / d, "pruned": k, "acc": acc, "asr": asr}

        curve = [point(round(f * d)) for f in params.fractions]
        base = point(0)
        ok = [c for c in curve if c["acc"] >= base["acc"] - params.max_acc_drop]
        chosen = max(ok, key=lambda c: c["pruned"]) if ok else base
        log(f"fine-pruning: {chosen['pruned']}/{d} channels pruned (ACC {chosen['acc']:.4f}, ASR {chosen['asr']:.4f}); fine-tuning a copy")
        pruned = copy.deepcopy(suspect.model)
        mask = masked(chosen["pruned"])
        final_linear(pruned).register_forward_pre_hook(lambda m, inp: (inp[0] * mask.view(1, -1),))
        fit(pruned, suspect.data, params.finetune, params.seed, suspect.device)
        after = suspect.acc_asr(pruned.eval())
        return {"channels": d, "before": {"acc": base["acc"], "asr": base["asr"]}, "curve": curve,
                "chosen": chosen, "after_finetune": after}

    @staticmethod
    def summary(result: dict) -> dict:
        return {"before": result["before"], "chosen": result["chosen"], "after": result["after_finetune"]}

    @staticmethod
    def aggregate(summaries: list[dict]) -> dict:
        return {step: {k: mean_sd([100 * m[step][k] for m in summaries]) for k in ("acc", "asr")}
                for step, _ in FinePruning.STEPS}

    @staticmethod
    def columns(entry: dict | None) -> list[tuple[str, str]]:
        return [(f"{k.upper()} {name}", "-" if not entry else f"{entry[step][k]['mean']:.2f}")
                for step, name in FinePruning.STEPS for k in ("acc", "asr")]
