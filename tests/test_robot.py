"""RoBoT: normalisation, BO on a synthetic pool with a known best weighting, and the final pick."""
import numpy as np
import pytest
from pydantic import ValidationError

from naspoison.nas.robot import RoBoT, RoBoTParams, bo_search, normalise_metrics, split_halves
from naspoison.spaces.darts import Genotype


def test_normalisation_is_oriented_ranks_immune_to_scale_with_a_neutral_value_for_non_finite():
    raw = np.array([[1e30, 5.0], [1e60, 1.0], [1e45, np.nan], [np.inf, 3.0]])
    z = normalise_metrics(raw, np.array([1.0, -1.0]))
    # synflow-like column: ranks 0, 2, 1 over the finite values; inf is neutral
    assert z[:, 0].tolist() == [0.0, 1.0, 0.5, 0.5]
    # a "lower is better" column is flipped: the smallest value (1.0) is best
    assert z[:, 1].tolist() == [0.0, 1.0, 0.5, 0.5]


def synthetic_pool(n=400, k=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.uniform(size=(n, k))
    true_w = np.array([1.0, -0.6, 0.0, 0.3])
    acc = z @ true_w
    return z, acc, true_w


def params(**kw):
    base = {"pool_size": 1, "queries": 12, "bo_queries": 8, "init_points": 3, "acquisition_candidates": 3000}
    return RoBoTParams(**{**base, **kw})


def test_bo_finds_the_best_architecture_of_a_pool_with_a_known_best_weighting():
    z, acc, _ = synthetic_pool()
    calls = []

    def evaluate(i):
        calls.append(i)
        return float(acc[i])

    out = bo_search(z, evaluate, params(), seed=0)
    # the best weighting's arg-max is the pool's best architecture, and BO + exploitation reach it
    assert out["best"] == int(np.argmax(acc))
    assert len(calls) == len(set(calls)) == 12  # distinct trainings only, the budget spent exactly
    # BO itself found it: a GP-proposed weighting (after the random initial points) whose arg-max it is
    first = next(h for h in out["history"] if h["arch"] == out["best"])
    assert first["phase"] == "bo" and out["history"].index(first) >= params().init_points
    assert int(np.argmax(z @ np.array(first["w"]))) == out["best"]


def test_random_weightings_alone_do_worse_than_bo_on_average():
    # the GP matters: with the same number of trainings, pure random w finds a worse architecture
    wins = 0
    for seed in range(5):
        z, acc, _ = synthetic_pool(seed=seed)
        def evaluate(i, acc=acc):
            return float(acc[i])

        bo = bo_search(z, evaluate, params(queries=6, bo_queries=6), seed=seed)
        rnd = bo_search(z, evaluate, params(queries=6, bo_queries=6, init_points=10**6), seed=seed)
        wins += bo["best_acc"] >= rnd["best_acc"]
    assert wins >= 4


def test_the_final_pick_is_the_best_evaluated_architecture_not_the_last_or_the_first():
    z = np.eye(5)  # w's arg-max is the pool entry of its largest component: every entry reachable
    acc = [0.2, 0.9, 0.4, 0.1, 0.3]
    out = bo_search(z, lambda i: acc[i], params(queries=5, bo_queries=2, init_points=2), seed=3)
    assert sorted(out["trained"]) == [0, 1, 2, 3, 4]
    # the best (entry 1) was trained neither first nor last: the pick is the arg-max of what was evaluated
    assert out["trained"].index(1) not in (0, 4)
    assert out["best"] == 1 and out["best_acc"] == 0.9


def test_repeated_proposals_cost_no_training():
    z = np.zeros((3, 2))
    z[0] = 1.0  # entry 0 wins for any w with a positive component: proposals repeat
    calls = []
    out = bo_search(z, lambda i: calls.append(i) or 0.5, params(queries=3, bo_queries=3, max_bo_iterations=10), seed=0)
    assert len(calls) == len(set(calls))
    assert sum(h["new"] for h in out["history"]) == len(calls)


def test_params_validation():
    with pytest.raises(ValidationError, match="unknown metric"):
        RoBoTParams(metrics=["snipp"])
    with pytest.raises(ValidationError, match="exceeds the query budget"):
        RoBoTParams(queries=3, bo_queries=5)
    p = RoBoTParams.model_validate({"query_train": {"epochs": 2}})
    assert p.query_train.epochs == 2 and p.query_train.init_channels == 16


def test_query_split_halves_the_training_set_and_never_touches_the_test_set():
    from naspoison.data.datasets import make_image_data

    rng = np.random.default_rng(0)
    data = make_image_data("t", rng.integers(0, 256, (20, 4, 4, 1), dtype=np.uint8), np.arange(20) % 3,
                           np.full((5, 4, 4, 1), 7, np.uint8), np.zeros(5, int), 3)
    q = split_halves(data, 0.5, seed=0)
    assert len(q.y_train) == len(q.y_test) == 10
    rows = {x.tobytes() for x in np.concatenate([q.x_train, q.x_test])}
    assert rows == {x.tobytes() for x in data.x_train}


@pytest.mark.slow
def test_search_end_to_end_returns_the_best_trained_architecture(digits_small):
    p = RoBoTParams.model_validate({
        "pool_size": 6, "metric_batch_size": 16, "metric_channels": 4, "metric_layers": 3, "queries": 3,
        "bo_queries": 2, "init_points": 2,
        "query_train": {"epochs": 1, "batch_size": 64, "init_channels": 4, "layers": 3, "auxiliary_weight": 0.0,
                        "drop_path_prob": 0.0, "cutout": 0, "crop_padding": 1, "flip": False}})
    out = RoBoT().search(digits_small, p, seed=0)
    accs = [t["acc"] for t in out["trained"]]
    assert len(accs) == 3
    assert out["best_acc"] == max(accs)
    best = next(t for t in out["trained"] if t["acc"] == max(accs))
    assert Genotype.from_dict(out["genotype"]) == Genotype.from_dict(best["genotype"])
    assert set(out["trained"][0]["metrics"]) == set(p.metrics)
