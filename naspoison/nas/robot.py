"""RoBoT (He et al. 2024, "Robustifying and Boosting Training-Free Neural Architecture Search"),
written from the paper.

A pool of sampled genotypes is scored once by k training-free metrics on one batch of the
(possibly poisoned) training set. A weight vector w ∈ [−1, 1]^k turns the normalised metrics Z
into one score per architecture; the objective of w is the validation accuracy of the pool's
arg-max architecture under Z·w, after a short training on one half of the (possibly poisoned)
training set, validated on the other half — the attack surface. Bayesian optimisation (a seeded
scikit-learn GP, UCB acquisition maximised over random candidates) searches w; then greedy
exploitation walks the ranking of the best w found and trains the top architectures not yet
trained until the query budget is spent. The result is the best *evaluated* architecture.

Choices, stated once:
* Normalisation: per metric, the average rank over the pool scaled to [0, 1] and oriented by the
  metric's declared sign (1 = best by that metric). Ranks are immune to synflow's 1e30–1e60 range;
  a non-finite value gets the neutral 0.5.
* Deduplication: a w whose arg-max architecture was already trained costs no training; its known
  accuracy is added to the GP's data. BO stops after ``bo_queries`` distinct trainings or
  ``max_bo_iterations`` proposals; exploitation then fills the budget up to ``queries``.
* Ties: arg-max over the pool takes the lowest pool index; the returned architecture is the
  first-trained among equal best accuracies.

Against the reference (ztcoalson/RoBoT ``darts_space/search.py``, the fork the poisoning paper ran):
* Query training and metric network are the reference's by default: batch 576, SGD lr 0.1 cosine
  to 5e-3, momentum 0.9, wd 3e-4, clip 5, drop-path 0.2 ramped, **no augmentation** (its loaders use
  the validation transform), no auxiliary head, 5 cells of 16 channels, 10 epochs; metrics on a
  5-cell, 16-channel network.
* Metrics: the reference's definitions by default (``synflow_bn``: BN kept in train mode on the
  batch of one; ``fisher_fanin``: each channel counted fan-in times); the library's ``synflow``
  (Tanaka et al., BN bypassed) and ``fisher`` (per channel once) are named alternatives.
* Pool: ``pool_sampler: all_ops`` (default) samples all 7 non-``none`` ops; ``reference`` reproduces
  the reference's sampler, whose op index runs over 1..6 of the 8 primitives, so it never proposes
  dil_conv_5x5 (a defect). Both draw two distinct inputs per node, as the reference does.
* BO: 1 random proposal, then UCB (κ 2.576), 25 proposals in all, then exploitation up to 25
  distinct trainings — the reference's ``maximize(init_points=0, n_iter=24)`` plus its fill loop.
  The GP (scikit-learn, Matern 5/2 + white noise) and the acquisition maximiser (random candidates)
  are ours, not bayes_opt's. Normalisation by ranks (reference: min-max) is ours.
* Returned architecture: ``pick: best_evaluated`` (default); ``reference`` reproduces the reference's
  selection loop, which starts from ``min(val_accs) - 1`` — the smallest *pool index* trained, not an
  accuracy — and pool entry 0, so it returns entry 0 unless an accuracy (in %) beats that index.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np
from typing import Literal

from pydantic import Field, model_validator

from naspoison.data.augment import channel_stats
from naspoison.data.datasets import ImageData, make_image_data
from naspoison.nas.base import NASAlgorithm
from naspoison.nas.metrics import METRICS, compute_metrics
from naspoison.nas.random_search import NON_NONE_OPS, sample_distinct
from naspoison.params import StrictParams
from naspoison.train import Recipe, seed_everything, train_genotype
from naspoison._lazy import lazy

torch = lazy("torch", globals())
nn = lazy("torch.nn", globals())

# the reference's six metrics as it computes them (search.py compute_metrics)
PAPER_METRICS = ["grad_norm", "snip", "grasp", "fisher_fanin", "synflow_bn", "jacob_cov"]
# the reference's pool never reaches dil_conv_5x5 (op index 1..6 of 8)
REFERENCE_POOL_OPS = tuple(op for op in NON_NONE_OPS if op != "dil_conv_5x5")


class QueryRecipe(Recipe):
    """The short training that scores a query, with the reference's values (search.py: batch 576,
    lr 0.1 cosine to 5e-3, drop-path 0.2, no augmentation, no auxiliary head, 5 cells of 16 channels,
    10 epochs), so a profile that sets only some keys gets these, not the retraining recipe's."""

    epochs: int = Field(10, gt=0)
    batch_size: int = Field(576, gt=0)
    lr: float = Field(0.1, gt=0)
    lr_min: float = Field(5e-3, ge=0)
    init_channels: int = Field(16, gt=0)
    layers: int = Field(5, ge=3)
    auxiliary_weight: float = Field(0.0, ge=0)
    drop_path_prob: float = Field(0.2, ge=0, lt=1)
    crop_padding: int = Field(0, ge=0)
    flip: bool = False
    cutout: int = Field(0, ge=0)


class RoBoTParams(StrictParams):
    """Defaults are the paper's DARTS values (60,000 genotypes, 25 queries, 10 training epochs)."""
    pool_size: int = Field(60_000, gt=0)
    metrics: list[str] = Field(default_factory=lambda: list(PAPER_METRICS), min_length=1)
    metric_batch_size: int = Field(64, gt=1)
    metric_channels: int = Field(16, gt=0)
    metric_layers: int = Field(5, ge=3)
    pool_sampler: Literal["all_ops", "reference"] = "all_ops"
    pick: Literal["best_evaluated", "reference"] = "best_evaluated"
    queries: int = Field(25, gt=0, description="distinct architectures trained, BO and exploitation together")
    bo_queries: int = Field(25, gt=0)
    init_points: int = Field(1, gt=0, description="random w before the GP takes over")
    max_bo_iterations: int = Field(25, gt=0, description="BO proposals at most (the reference: 1 + 24)")
    ucb_kappa: float = Field(2.576, ge=0)
    acquisition_candidates: int = Field(2000, gt=0)
    train_portion: float = Field(0.5, gt=0, lt=1)
    query_train: QueryRecipe = Field(default_factory=QueryRecipe)

    @model_validator(mode="after")
    def _consistent(self) -> RoBoTParams:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
        if self.bo_queries > self.queries:
            raise ValueError(f"bo_queries {self.bo_queries} exceeds the query budget {self.queries}")
        return self


# ----------------------------------------------------------------------------- pure parts
def normalise_metrics(values: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """[pool, k] raw metrics -> [pool, k] oriented ranks in [0, 1] (1 = best by that metric)."""
    from scipy.stats import rankdata  # scipy.stats takes ~1 s to import: only when ranking

    n, k = values.shape
    z = np.full((n, k), 0.5)
    for j in range(k):
        v = values[:, j] * signs[j]
        ok = np.isfinite(v)
        if ok.sum() > 1:
            z[ok, j] = (rankdata(v[ok]) - 1) / (ok.sum() - 1)
    return z


def _gp(seed: int, k: int):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(length_scale=np.ones(k), length_scale_bounds=(1e-2, 1e2), nu=2.5) \
        + WhiteKernel(1e-4, (1e-8, 1e-1))
    return GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=2, random_state=seed)


def bo_search(z: np.ndarray, evaluate: Callable[[int], float], p: RoBoTParams, seed: int,
              log: Callable[[str], None] = lambda m: None) -> dict:
    """RoBoT's search over weightings of the normalised metrics ``z``; ``evaluate(i)`` trains pool
    entry i and returns its validation accuracy (called once per distinct i)."""
    rng = np.random.default_rng([seed, 0x80B07])
    n, k = z.shape
    evaluated: dict[int, float] = {}  # in training order
    ws: list[np.ndarray] = []
    ys: list[float] = []
    history: list[dict] = []

    def query(i: int, phase: str, w: np.ndarray | None) -> float:
        new = i not in evaluated
        if new:
            evaluated[i] = float(evaluate(i))
            log(f"{phase}: trained pool entry {i} -> {evaluated[i]:.4f} ({len(evaluated)}/{p.queries} queries)")
        history.append({"phase": phase, "w": None if w is None else w.tolist(), "arch": i, "acc": evaluated[i], "new": new})
        return evaluated[i]

    budget = min(p.queries, n)
    bo_budget = min(p.bo_queries, budget)
    gp = _gp(seed, k)
    for _ in range(p.max_bo_iterations):
        if len(evaluated) >= bo_budget:
            break
        if len(ws) < p.init_points:
            w = rng.uniform(-1, 1, k)
        else:
            with warnings.catch_warnings():  # a few points and a flat objective: the optimiser may stop at a bound
                from sklearn.exceptions import ConvergenceWarning

                warnings.simplefilter("ignore", ConvergenceWarning)
                gp.fit(np.array(ws), np.array(ys))
            cand = rng.uniform(-1, 1, (p.acquisition_candidates, k))
            mu, sd = gp.predict(cand, return_std=True)
            w = cand[int(np.argmax(mu + p.ucb_kappa * sd))]
        ws.append(w)
        ys.append(query(int(np.argmax(z @ w)), "bo", w))
    best_w = ws[int(np.argmax(ys))]
    for i in np.argsort(-(z @ best_w), kind="stable"):  # greedy exploitation of the best weighting
        if len(evaluated) >= budget:
            break
        if int(i) not in evaluated:
            query(int(i), "exploit", None)
    best = max(evaluated, key=evaluated.__getitem__)  # max keeps the first-trained of equal accuracies
    return {"best": best, "best_acc": evaluated[best], "best_w": best_w.tolist(), "trained": list(evaluated),
            "accuracies": {str(i): acc for i, acc in evaluated.items()}, "history": history}


def reference_pick(trained: list[int], accuracies: dict[int, float]) -> int:
    """The reference's final selection (search.py after exploitation), accuracies in percent: it
    starts from pool entry 0 and ``min(val_accs) - 1``, where ``min`` of the dict is the smallest
    *index* trained, and keeps an architecture only if its accuracy beats the running value."""
    opt_acc, opt_arch = min(trained) - 1, 0
    for arch in trained:
        if accuracies[arch] > opt_acc:
            opt_acc, opt_arch = accuracies[arch], arch
    return opt_arch


# ----------------------------------------------------------------------------- the search
def split_halves(data: ImageData, portion: float, seed: int) -> ImageData:
    """The query data: train on one seeded half of the training set, validate on the other."""
    rng = np.random.default_rng([seed, 0x5B117])
    perm = rng.permutation(len(data.y_train))
    cut = round(len(perm) * portion)
    a, b = np.sort(perm[:cut]), np.sort(perm[cut:])
    return make_image_data(f"{data.name}[query split]", data.x_train[a], data.y_train[a], data.x_train[b],
                           data.y_train[b], data.num_classes)


class RoBoT(NASAlgorithm):
    name = "robot"
    title = "RoBoT"
    uses_data = True
    uses_labels = True
    Params = RoBoTParams

    def search(self, data: ImageData, params: RoBoTParams, seed: int, device="cpu",
               log: Callable[[str], None] | None = None) -> dict:
        log = log or (lambda msg: None)
        device = torch.device(device)
        seed_everything(seed)
        rng = np.random.default_rng([seed, 0x9001])
        ops = NON_NONE_OPS if params.pool_sampler == "all_ops" else REFERENCE_POOL_OPS
        pool = [sample_distinct(rng, ops) for _ in range(params.pool_size)]
        h, _, c = data.shape
        idx = np.sort(rng.choice(len(data.y_train), size=min(params.metric_batch_size, len(data.y_train)), replace=False))
        mean, std = channel_stats(data.x_train)
        x = torch.from_numpy(((data.x_train[idx] / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)).to(device)
        y = torch.from_numpy(data.y_train[idx]).to(device)
        t0 = time.perf_counter()
        values = np.empty((len(pool), len(params.metrics)))
        for i, g in enumerate(pool):
            torch.manual_seed(int(rng.integers(2**62)))  # each network's init is its own seeded draw
            from naspoison.spaces.darts_net import EvalNetwork, Logits

            net = Logits(EvalNetwork(g, params.metric_channels, params.metric_layers, data.num_classes, in_channels=c,
                                      auxiliary=False, image_size=h)).to(device)
            values[i] = list(compute_metrics(net, x, y, params.metrics).values())
            if (i + 1) % max(1, len(pool) // 10) == 0:
                log(f"metrics: {i + 1}/{len(pool)} architectures ({time.perf_counter() - t0:.0f}s)")
        metric_seconds = time.perf_counter() - t0
        signs = np.array([METRICS[m].sign for m in params.metrics], dtype=float)
        z = normalise_metrics(values, signs)
        query_data = split_halves(data, params.train_portion, seed)

        def evaluate(i: int) -> float:
            return train_genotype(pool[i], query_data, params.query_train, seed, device=device)["test_acc"]

        found = bo_search(z, evaluate, params, seed, log)
        finite = np.isfinite(values)
        chosen = found["best"]
        if params.pick == "reference":
            chosen = reference_pick(found["trained"], {i: 100 * a for i, a in ((int(k), v) for k, v in found["accuracies"].items())})

        def metric_row(i: int) -> dict:
            return {m: (float(values[i, j]) if finite[i, j] else None) for j, m in enumerate(params.metrics)}

        return {
            "genotype": pool[chosen].to_dict(), "pick": params.pick, "returned_pool_index": chosen,
            "best_pool_index": found["best"], "best_acc": found["best_acc"], "best_w": found["best_w"],
            "metrics": params.metrics,
            "trained": [{"pool_index": i, "genotype": pool[i].to_dict(), "acc": found["accuracies"][str(i)],
                         "metrics": metric_row(i)} for i in found["trained"]],
            "history": found["history"],
            "metric_seconds": metric_seconds,
            "non_finite_metrics": {m: int((~finite[:, j]).sum()) for j, m in enumerate(params.metrics)},
            "query_split": {"train": len(query_data.y_train), "validation": len(query_data.y_test)},
        }



