"""NAS-aware gradient canceling (the poisoning paper §3.2): gradient canceling whose target is the
victim NAS algorithm's own product, so the poisons act on the architecture choice.

* TE-NAS, RoBoT (and any algorithm whose ``gc_target`` is ``"weights"``): the final architecture of
  the best clean trial (highest clean retraining accuracy; ties: lowest seed), trained on clean data;
  θ = its weights and biases.
* P-DARTS (``gc_target = "alphas"``): that trial's converged supernet; θ = the architecture
  parameters (alphas), GradPC applied to them, so the poisons push the alphas themselves.

The GradPC radius is per victim (``gradpc_by_victim``): a radius relative to ‖θ₀‖ suits trained
weights (‖θ₀‖ ≈ 35 on the demo networks), but P-DARTS's 84 alphas have a norm of ~0.02, so 0.005·‖α‖
moves nothing (a refused target, see ``check_target_effect``). The default for P-DARTS is the authors'
own target, named ``gradpc-pdarts-eps=1.0-arch`` in their P-DARTS fork (ztcoalson/pdarts,
``check_norms.py``): an absolute l2 radius of 1.0 on the alphas. The suite resolves the victim's
entry into ``gradpc`` before keying the poison (``params_for_victim``), so a key holds only what ran.

For an alphas target the summary records the target's effect on the derived genotype: the genotype
before and after GradPC, how many of its 16 (op, input) entries changed, and the change of the
softmax weights.

The poison cell's key holds the victim's algorithm, its parameters, the keys of the clean search
cells it chooses from and the retraining recipe (``stages.victim``); the executor runs those clean
trials first.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from naspoison.attacks.base import Attack, AttackContext, Poison
from naspoison.attacks.gradient_canceling import GCParams, GradPCParams, cancel_gradients
from naspoison.data.datasets import ImageData


def _authors_targets() -> dict[str, GradPCParams]:
    return {"pdarts": GradPCParams(epsilon=1.0, relative=False)}


class NASGCParams(GCParams):
    gradpc_by_victim: dict[str, GradPCParams] = Field(
        default_factory=_authors_targets,
        description="GradPC settings per victim algorithm (replacing gradpc); default: P-DARTS absolute l2 1.0")

    @model_validator(mode="after")
    def _known_victims(self) -> NASGCParams:
        from naspoison.nas import ALGORITHMS  # lazy: the algorithms import the attack-free parts only

        unknown = sorted(set(self.gradpc_by_victim) - set(ALGORITHMS))
        if unknown:
            raise ValueError(f"gradpc_by_victim: unknown algorithm(s) {unknown}; known: {sorted(ALGORITHMS)}")
        return self

    def for_victim(self, algorithm: str) -> NASGCParams:
        """The parameters as run against ``algorithm``: its entry (if any) becomes ``gradpc``."""
        gp = self.gradpc_by_victim.get(algorithm, self.gradpc)
        return self.model_copy(update={"gradpc": gp, "gradpc_by_victim": {}})


def genotype_change(before: dict, after: dict) -> dict:
    """How far the target moved the derived genotype: changed (op, input) entries per cell (out of 8)."""
    out = {}
    for cell in ("normal", "reduce"):
        a, b = before["genotype"][cell], after["genotype"][cell]
        out[cell] = sum(tuple(x) != tuple(y) for x, y in zip(a, b, strict=True))
    out["total"] = out["normal"] + out["reduce"]
    return out


class NASGradientCanceling(Attack):
    name = "nas_gradient_canceling"
    title = "NAS-specific gradient canceling"
    changes = "images"
    targets_algorithm = True   # one poisoned set per victim algorithm
    Params = NASGCParams

    @staticmethod
    def params_for_victim(params: dict, algorithm: str) -> dict:
        return NASGCParams.model_validate(params).for_victim(algorithm).model_dump()

    def poison(self, data: ImageData, budget: float, params: NASGCParams, rng: np.random.Generator,
               device="cpu", ctx: AttackContext | None = None) -> Poison:
        if ctx is None or ctx.victim is None:
            raise ValueError("nas_gradient_canceling needs a victim (the best clean trial of the attacked "
                             "algorithm); run it through the suite, which resolves it")
        v = ctx.victim
        params = params.for_victim(v.info["algorithm"])
        before = v.architecture() if v.architecture else None
        out = cancel_gradients(v.model, v.named_params, data, budget, params, rng, device, ctx.log)
        out.summary["victim"] = v.info
        if before is not None:  # GradPC left the model at the target
            after = v.architecture()
            diff = [abs(x - y) for cell in ("normal", "reduce")
                    for ra, rb in zip(before["probs"][cell], after["probs"][cell]) for x, y in zip(ra, rb)]
            change = genotype_change(before, after)
            out.summary["target"]["architecture"] = {
                "genotype_before": before["genotype"], "genotype_after": after["genotype"],
                "genotype_entries_changed": change, "probs_before": before["probs"], "probs_after": after["probs"],
                "probs_max_abs_change": max(diff), "probs_mean_abs_change": float(np.mean(diff))}
            ctx.log(f"GradPC target changes {change['total']} of 16 genotype entries "
                    f"(normal {change['normal']}, reduce {change['reduce']}); softmax weights move by up to {max(diff):.3g}")
        return out
