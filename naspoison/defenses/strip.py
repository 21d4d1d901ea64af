"""STRIP (Gao et al., ACSAC 2019): a triggered input keeps its (target) prediction when other images are
superimposed on it, so the softmax entropy of its blends is low.

For every input x: N clean held-out images x_n (drawn per input from the clean *test* pool, never the
input itself), blends b_n = min(1, x + x_n) on the [0, 1] scale — the paper's superimposition adds the
two images with weight 1 each (saturating). An averaging blend (x + x_n)/2 would halve a patch
trigger's intensity and hide it (measured: AUROC 0.33 instead of near 1 on a planted BadNets model),
so it is not used. H(x) = mean over n of −Σ_c softmax(f(b_n))_c·log₂ softmax(…)_c.
Detection score = −H (low entropy = suspected trigger); AUROC of triggered inputs (positives, from
non-target classes) against clean inputs, on the continuous score (sklearn's ``roc_auc_score``, ties
counted half). AUROC is threshold-free; the paper's detection threshold (chosen for a 1 % false
rejection rate on clean inputs) is not applied.

Which inputs count (``positives``; both AUROCs are always reported, ``auroc`` is the chosen one):

* ``all`` (default, ours): clean = every sampled input; triggered = every sampled input whose class
  is not the target — a failed trigger counts as a positive and pulls the AUROC towards 0.5, so the
  number mixes detection with the attack's own failure rate (reported apart as ASR).
* ``successful`` (trojanzoo's ``InputFiltering.get_test_data``, what Evas ran): only inputs the model
  classifies correctly *and* whose triggered copy goes to the target (target-class inputs included, as
  there), both clean and triggered — detection of triggers that work.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field

from naspoison.defenses.base import BackdoorDefense, Suspect, mean_sd
from naspoison.report.table import pm
from naspoison.params import StrictParams
from naspoison._lazy import lazy, no_grad

torch = lazy("torch", globals())


class StripParams(StrictParams):
    overlays: int = Field(100, gt=0, description="N clean images superimposed on each input")
    inputs: int = Field(500, gt=0, description="clean and triggered test inputs scored")
    positives: Literal["all", "successful"] = "all"
    seed: int = 0


@no_grad
def entropy(s: Suspect, x: torch.Tensor, pool: torch.Tensor, overlays: int, gen: torch.Generator,
            batch: int = 1000) -> torch.Tensor:
    """Mean softmax entropy (bits) of each input blended with ``overlays`` random pool images."""
    out = []
    for xi in x:
        picks = torch.randint(0, len(pool), (overlays,), generator=gen)
        blends = (xi[None] + pool[picks.to(pool.device)]).clamp_max(1.0)
        h = []
        for i in range(0, overlays, batch):
            p = torch.softmax(s.logits(blends[i:i + batch]).double(), 1)
            h.append(-(p * torch.log2(p.clamp_min(1e-300))).sum(1))
        out.append(torch.cat(h).mean())
    return torch.stack(out).float().cpu()


def _auroc(h_trig: torch.Tensor, h_clean: torch.Tensor) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(h_trig) == 0 or len(h_clean) == 0:
        return None  # no positive (or negative): undefined, never a made-up 0.5
    scores = np.concatenate([-h_trig.numpy(), -h_clean.numpy()])
    labels = np.concatenate([np.ones(len(h_trig)), np.zeros(len(h_clean))])
    return float(roc_auc_score(labels, scores))


class Strip(BackdoorDefense):
    """Detect triggered inputs by the entropy of their blends with clean images (Evas Table 4)."""

    name = "strip"
    title = "STRIP"
    table = "Backdoor detection (Evas Table 4)"
    note = "STRIP's AUROC separates triggered from clean inputs by blend entropy (0.5 = chance)"
    Params = StripParams

    def run(self, suspect: Suspect, params: StripParams, log: Callable[[str], None] | None = None) -> dict:
        gen = torch.Generator().manual_seed(params.seed)
        x, y = suspect.images("test"), suspect.labels("test")
        n = len(x)
        order = torch.randperm(n, generator=gen)
        half = n // 2  # inputs from one half, overlays from the other: an input never meets itself
        inputs, pool = order[:half][:params.inputs], order[half:]
        xi, yi = x[inputs.to(x.device)], y[inputs.to(y.device)]
        trig = suspect.triggered(xi)
        h_clean = entropy(suspect, xi, x[pool.to(x.device)], params.overlays, gen)
        h_trig = entropy(suspect, trig, x[pool.to(x.device)], params.overlays, gen)
        nontarget = (yi != suspect.target).cpu()
        success = ((suspect.predict(xi) == yi) & (suspect.predict(trig) == suspect.target)).cpu()
        aurocs = {"all": _auroc(h_trig[nontarget], h_clean), "successful": _auroc(h_trig[success], h_clean[success])}
        auroc = aurocs[params.positives]
        if log:
            log(f"STRIP: entropy clean {h_clean.mean():.3f} triggered {h_trig[nontarget].mean():.3f} bits, "
                f"AUROC {aurocs['all']} (all non-target), {aurocs['successful']} (successful triggers)")
        return {"auroc": auroc, "positives": params.positives, "auroc_all": aurocs["all"],
                "auroc_successful": aurocs["successful"], "n_successful": int(success.sum()),
                "entropy_clean_mean": float(h_clean.mean()), "entropy_triggered_mean": float(h_trig[nontarget].mean()),
                "n_clean": len(h_clean), "n_triggered": int(nontarget.sum()), "overlays": params.overlays}

    @staticmethod
    def summary(result: dict) -> dict:
        # .get: results from before both AUROCs were reported
        return {"auroc": result["auroc"], "auroc_all": result.get("auroc_all"),
                "auroc_successful": result.get("auroc_successful")}

    @staticmethod
    def aggregate(summaries: list[dict]) -> dict:
        au = [m["auroc"] for m in summaries if m["auroc"] is not None]  # None: no successful trigger to detect
        return {"auroc": mean_sd(au) if au else None}

    @staticmethod
    def columns(entry: dict | None) -> list[tuple[str, str]]:
        return [("STRIP AUROC", pm(entry["auroc"], nd=3) if entry else "-")]
