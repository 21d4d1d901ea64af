"""Neural Cleanse (Wang et al., S&P 2019): reverse-engineer, for every class k, the smallest mask m_k
(H×W) and pattern p_k (C×H×W) such that (1 − m_k)⊙x + m_k⊙p_k is classified as k; a backdoor target
needs an anomalously small mask.

Written from the paper (every public implementation differs somewhere; our choices):
* m = (tanh(a)+1)/2, p = (tanh(b)+1)/2 on the [0, 1] pixel scale; Adam (lr 0.1, betas 0.5/0.9);
  loss_k = CE(f(x'_k), k) + λ_k·|m_k|₁ (the L1 summed over pixels, as the paper's ‖m‖₁).
* **All classes in one batched optimisation**: each step sends every batch through the model once
  per class (one forward of K·B images); λ_k, its schedule and early stop are per class.
* Cost schedule (paper §IV-C): λ starts at ``init_cost`` 1e-3 once the mask first reaches
  ``attack_threshold`` 99 % success on the epoch (before that λ = 0); then after ``patience`` 5
  consecutive epochs at or above the threshold λ ×= 1.5, after 5 below λ /= 1.5^1.5.
* The **best** mask is kept: the smallest L1 among epochs whose success ≥ the threshold (never the
  last one). Early stop per class: once λ > 0, no L1 improvement of at least 1 % over the best for
  ``early_stop_patience`` 10 epochs while successful. A class that never reaches the threshold
  keeps its smallest-L1 mask of all epochs and is marked ``reached: false``.
* ``schedule: reference`` (bolunwang/backdoor ``Visualizer.visualize``, trojanzoo's
  ``NeuralCleanse.check_early_stop``): λ is set to ``init_cost`` only after ``patience`` consecutive
  successful epochs; the best mask is chosen by the epoch's *mean* L1; early stop needs the cost to
  have been both raised and lowered since it was set, and ``early_stop_patience`` epochs without a 1 %
  improvement of the best L1; a class that never succeeds keeps its *last* mask. The reference values
  are patience 10 and early-stop patience 20 (the paper profile).
* Anomaly index of class k = |L1_k − median| / (1.4826 · MAD), median the numpy one (the mean of
  the two middle values for an even count), MAD = median |L1 − median|. A class is flagged when
  its L1 is below the median and its index exceeds 2 (only small masks mean a backdoor). With
  MAD = 0 an L1 off the median has an infinite index (null in results, flagged if below).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field

from naspoison.defenses.base import BackdoorDefense, Suspect, mean_sd
from naspoison.report.table import pm
from naspoison.params import StrictParams
from naspoison.run import checkpoint
from naspoison._lazy import lazy

torch = lazy("torch", globals())
F = lazy("torch.nn.functional", globals(), "F")


class NeuralCleanseParams(StrictParams):
    epochs: int = Field(100, gt=0)
    batch_size: int = Field(32, gt=0)
    samples: int = Field(1000, gt=0, description="clean training images used")
    lr: float = Field(0.1, gt=0)
    init_cost: float = Field(1e-3, gt=0)
    attack_threshold: float = Field(0.99, gt=0, le=1)
    patience: int = Field(5, gt=0)
    cost_multiplier: float = Field(1.5, gt=1)
    early_stop_patience: int = Field(10, gt=0)
    schedule: Literal["ours", "reference"] = "ours"
    seed: int = 0


def median(values) -> float:
    """numpy's median: the middle value, or the mean of the two middle values for an even count."""
    v = sorted(float(x) for x in values)
    n = len(v)
    if n == 0:
        raise ValueError("median of nothing")
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def anomaly_index(l1: list[float]) -> list[float]:
    """|L1 − median| / (1.4826·MAD) per class; all zero when MAD = 0 and every L1 equals the median."""
    med = median(l1)
    mad = median(abs(x - med) for x in l1)
    if mad == 0:
        return [0.0 if x == med else math.inf for x in l1]
    return [abs(x - med) / (1.4826 * mad) for x in l1]


def reverse_engineer(s: Suspect, p: NeuralCleanseParams, log=None) -> dict:
    """The best mask per class (L1, success rate, whether the threshold was reached) and the epochs run."""
    log = log or (lambda m: None)
    gen = torch.Generator().manual_seed(p.seed)
    n = len(s.data.x_train)
    idx = torch.randperm(n, generator=gen)[:min(p.samples, n)].numpy()
    x_all = s.images("train", np.sort(idx))
    k, (c, h, w) = s.data.num_classes, x_all.shape[1:]
    # random starts in tanh space, as the paper's implementation does; drawn on the CPU from the seeded
    # generator so the result is a function of the parameters, whatever the device or global RNG state
    a = (torch.rand(k, 1, h, w, generator=gen) * 2 - 1).to(s.device).requires_grad_()
    b = (torch.rand(k, c, h, w, generator=gen) * 2 - 1).to(s.device).requires_grad_()
    opt = torch.optim.Adam([a, b], lr=p.lr, betas=(0.5, 0.9))
    targets = torch.arange(k, device=s.device)
    cost = torch.zeros(k, device=s.device)
    cost_set = [False] * k
    up = [0] * k
    down = [0] * k
    best_l1 = [math.inf] * k
    best_any = [math.inf] * k   # smallest L1 whatever the success (for classes that never reach it)
    best_ok = [False] * k
    best_mask = torch.zeros(k, 1, h, w, device=s.device)
    stale = [0] * k
    active = torch.ones(k, dtype=torch.bool, device=s.device)
    flags = [q.requires_grad for q in s.model.parameters()]
    for q in s.model.parameters():  # only the masks and patterns learn
        q.requires_grad_(False)
    try:
        epoch = _optimise(s, p, x_all, a, b, opt, gen, targets, cost, cost_set, up, down, best_l1, best_any,
                          best_ok, best_mask, stale, active, log)
    finally:
        for q, f in zip(s.model.parameters(), flags):
            q.requires_grad_(f)
    if p.schedule == "reference":  # an unsuccessful class reports its last mask's L1
        l1 = [best_l1[j] if best_ok[j] else float(best_mask[j].sum()) for j in range(k)]
    else:
        l1 = [best_l1[j] if best_ok[j] else best_any[j] for j in range(k)]
    return {"l1": l1, "reached": best_ok, "epochs": epoch + 1, "masks": best_mask.cpu()}


def _reference_update(j, p, ok, l1, mask, cost, cost_set, up, down, best_l1, best_ok, best_mask, stale, active, ref):
    """One epoch's bookkeeping for class j as the reference does it (module docstring), in its order:
    best mask, early stop, then the cost."""
    if ok and l1 < best_l1[j]:
        best_l1[j], best_ok[j] = l1, True
        best_mask[j] = mask
    if not best_ok[j]:
        best_mask[j] = mask  # never successful so far: the last mask stands
    if best_ok[j]:
        stale[j] = stale[j] + 1 if best_l1[j] >= 0.99 * ref["es_best"][j] else 0
    ref["es_best"][j] = min(best_l1[j], ref["es_best"][j])
    if ref["raised"][j] and ref["lowered"][j] and stale[j] >= p.early_stop_patience:
        active[j] = False
        return
    if not cost_set[j] and ok:
        ref["set_count"][j] += 1
        if ref["set_count"][j] >= p.patience:
            cost[j], cost_set[j] = p.init_cost, True
            up[j] = down[j] = 0
            ref["raised"][j] = ref["lowered"][j] = False
    else:
        ref["set_count"][j] = 0
    up[j], down[j] = (up[j] + 1, 0) if ok else (0, down[j] + 1)
    if up[j] >= p.patience:
        up[j] = 0
        cost[j] *= p.cost_multiplier  # 0 stays 0 before the cost is set, as in the reference
        ref["raised"][j] = True
    elif down[j] >= p.patience:
        down[j] = 0
        cost[j] /= p.cost_multiplier ** 1.5
        ref["lowered"][j] = True


def _optimise(s, p, x_all, a, b, opt, gen, targets, cost, cost_set, up, down, best_l1, best_any, best_ok,
              best_mask, stale, active, log) -> int:
    k, (c, h, w) = len(targets), x_all.shape[1:]
    ref = {"es_best": [math.inf] * k, "set_count": [0] * k, "raised": [False] * k, "lowered": [False] * k}
    # updated in place, so restored in place (the reference schedule's state too)
    lists = [cost_set, up, down, best_l1, best_any, best_ok, stale, *ref.values()]
    ck = checkpoint.loop("neural_cleanse", optimizers=[opt], generators=[gen])
    st = ck.resume({"epoch": 0, "tensors": [a.detach(), b.detach(), cost, best_mask, active], "lists": lists})
    with torch.no_grad():
        for t, v in zip([a, b, cost, best_mask, active], st["tensors"], strict=True):
            t.copy_(v)
    for lst, v in zip(lists, st["lists"], strict=True):
        lst[:] = v
    epoch = st["epoch"] - 1 if st["epoch"] else 0
    for epoch in range(st["epoch"], p.epochs if bool(active.any()) else 0):
        perm = torch.randperm(len(x_all), generator=gen)
        hits = torch.zeros(k, device=s.device)
        seen = 0
        l1_sum = torch.zeros(k, device=s.device)
        for i in range(0, len(x_all), p.batch_size):
            xb = x_all[perm[i:i + p.batch_size]]
            bsz = len(xb)
            m, pat = (torch.tanh(a) + 1) / 2, (torch.tanh(b) + 1) / 2          # [K,1,H,W], [K,C,H,W]
            xt = (1 - m[:, None]) * xb[None] + m[:, None] * pat[:, None]      # [K,B,C,H,W]
            logits = s.logits(xt.reshape(k * bsz, c, h, w)).view(k, bsz, -1)
            ce = F.cross_entropy(logits.reshape(k * bsz, -1), targets.repeat_interleave(bsz),
                                 reduction="none").view(k, bsz).mean(1)
            l1 = m.flatten(1).sum(1)
            loss = ((ce + cost * l1) * active).sum()  # classes are independent: one summed loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                hits += (logits.argmax(2) == targets[:, None]).float().sum(1)
                l1_sum += l1.detach() * bsz
            seen += bsz
        rate = (hits / seen).tolist()
        l1_epoch = (l1_sum / seen).tolist()
        with torch.no_grad():
            m_now = (torch.tanh(a) + 1) / 2
            l1_now = m_now.flatten(1).sum(1).tolist()
        if p.schedule == "reference":
            for j in range(k):
                if bool(active[j]):
                    _reference_update(j, p, rate[j] >= p.attack_threshold, l1_epoch[j], m_now[j], cost, cost_set, up,
                                      down, best_l1, best_ok, best_mask, stale, active, ref)
            if (epoch + 1) % 10 == 0:
                log(f"neural cleanse epoch {epoch + 1}: success {np.round(rate, 2).tolist()} L1 {np.round(l1_epoch, 1).tolist()}")
            if not bool(active.any()):
                break
            continue
        for j in range(k):
            if not bool(active[j]):
                continue
            ok = rate[j] >= p.attack_threshold
            if l1_now[j] < best_any[j] and not best_ok[j]:
                best_any[j] = l1_now[j]
                best_mask[j] = m_now[j]
            if ok and l1_now[j] < best_l1[j]:
                improved = l1_now[j] < 0.99 * best_l1[j]
                best_l1[j], best_ok[j] = l1_now[j], True
                best_mask[j] = m_now[j]
                stale[j] = 0 if improved else stale[j] + 1
            elif cost_set[j]:
                stale[j] += 1
            if cost_set[j] and ok and stale[j] >= p.early_stop_patience:
                active[j] = False  # converged: no 1 % improvement for early_stop_patience epochs
                continue
            if not cost_set[j]:
                if ok:
                    cost[j], cost_set[j], stale[j] = p.init_cost, True, 0
                continue
            up[j], down[j] = (up[j] + 1, 0) if ok else (0, down[j] + 1)
            if up[j] >= p.patience:
                cost[j] *= p.cost_multiplier
                up[j] = 0
            elif down[j] >= p.patience:
                cost[j] /= p.cost_multiplier ** 1.5
                down[j] = 0
        if (epoch + 1) % 10 == 0:
            log(f"neural cleanse epoch {epoch + 1}: success {np.round(rate, 2).tolist()} L1 {np.round(l1_epoch, 1).tolist()}")
        ck.save_if_due(lambda e=epoch: {"epoch": e + 1, "tensors": [a.detach(), b.detach(), cost, best_mask, active],
                                        "lists": lists}, final=epoch + 1 == p.epochs or not bool(active.any()))
        if not bool(active.any()):
            break
    return epoch


class NeuralCleanse(BackdoorDefense):
    """Reverse-engineer a trigger per class; flag classes whose mask is anomalously small (Evas Table 4)."""

    name = "neural_cleanse"
    title = "Neural Cleanse"
    table = "Backdoor detection (Evas Table 4)"
    note = "Neural Cleanse flags a class whose mask L1 is below the median with anomaly index > 2"
    Params = NeuralCleanseParams

    def run(self, suspect: Suspect, params: NeuralCleanseParams, log: Callable[[str], None] | None = None) -> dict:
        r = reverse_engineer(suspect, params, log)
        index = anomaly_index(r["l1"])
        med = median(r["l1"])
        flagged = [j for j in range(len(index)) if r["l1"][j] < med and index[j] > 2]
        finite = [x if math.isfinite(x) else None for x in index]  # MAD = 0: an L1 off the median is infinitely anomalous
        return {"l1": r["l1"], "reached": r["reached"], "anomaly_index": finite, "median_l1": med,
                "flagged": flagged, "target_index": finite[suspect.target],
                "target_flagged": suspect.target in flagged, "epochs": r["epochs"]}

    @staticmethod
    def summary(result: dict) -> dict:
        return {"target_index": result["target_index"], "target_flagged": result["target_flagged"],
                "flagged": result["flagged"]}

    @staticmethod
    def aggregate(summaries: list[dict]) -> dict:
        idx = [m["target_index"] for m in summaries if m["target_index"] is not None]
        return {"target_index": mean_sd(idx) if idx else None, "flagged": sum(m["target_flagged"] for m in summaries)}

    @staticmethod
    def columns(entry: dict | None) -> list[tuple[str, str]]:
        index = "-" if not entry else ("∞" if entry["target_index"] is None else pm(entry["target_index"]))
        return [("NC anomaly index of the target", index),
                ("NC flags the target", "-" if not entry else f"{entry['flagged']}/{entry['n']}")]
