"""RoBoT at the reference's definitions on the CIFAR-10 subset (issue 18, items 3-4):

1. metric rankings under the old and new definitions over a pool of random architectures, Spearman per
   metric: old = the library's synflow (BN bypassed) and fisher (each channel once) on the old 8-cell
   metric network; new = the reference's synflow_bn (BN in train mode, batch of one) and fisher_fanin
   (each channel fan-in times) on its 5-cell network. Also each definition change alone (same network).
2. one RoBoT search end to end with the reference's query recipe (batch 576, lr 0.1 -> 5e-3, no
   augmentation, drop-path 0.2, 5 cells) and BO (1 random + UCB), at reduced scale.

  python benchmarks/fidelity_robot.py --npz /work/shared/data/cifar10_subset.npz \
      --out benchmarks/results/fidelity_robot_cifar10.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from naspoison.data.augment import channel_stats
from naspoison.data.datasets import load_dataset
from naspoison.nas.metrics import compute_metrics
from naspoison.nas.random_search import sample_distinct
from naspoison.nas.robot import Logits, RoBoT, RoBoTParams
from naspoison.spaces.darts import EvalNetwork

# grasp and jacob_cov keep their definitions (only the network changes); left out of the pool study to fit
# 2 shared CPU cores (each costs ~10 s a network here); the search below computes all six
OLD = ["grad_norm", "snip", "fisher", "synflow"]
NEW = ["grad_norm", "snip", "fisher_fanin", "synflow_bn"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", required=True)
    ap.add_argument("--pool", type=int, default=60)
    ap.add_argument("--channels", type=int, default=16, help="metric network width (reference: 16)")
    ap.add_argument("--batch", type=int, default=64, help="metric batch (reference: 64)")
    ap.add_argument("--search-pool", type=int, default=20)
    ap.add_argument("--search-channels", type=int, default=8, help="metric network width in the search")
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--query-epochs", type=int, default=2)
    ap.add_argument("--query-channels", type=int, default=8)
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    data = load_dataset({"name": "npz", "path": args.npz})
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(data.y_train), args.batch, replace=False))
    mean, std = channel_stats(data.x_train)
    x = torch.from_numpy(((data.x_train[idx] / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32))
    y = torch.from_numpy(data.y_train[idx]).long()
    pool = [sample_distinct(rng) for _ in range(args.pool)]
    rows = {f"{layers}:{m}": [] for layers in (8, 5) for m in sorted(set(OLD + NEW))}
    t0 = time.perf_counter()
    for i, g in enumerate(pool):
        seed = int(rng.integers(2**62))
        for layers in (8, 5):
            torch.manual_seed(seed)  # the same init draw for both networks' shared prefix
            net = Logits(EvalNetwork(g, args.channels, layers, 10, in_channels=3, auxiliary=False, image_size=32))
            vals = compute_metrics(net, x, y, sorted(set(OLD + NEW)))
            for m, v in vals.items():
                rows[f"{layers}:{m}"].append(v)
        if (i + 1) % 10 == 0:
            print(f"metrics {i + 1}/{len(pool)} ({time.perf_counter() - t0:.0f}s)", flush=True)

    def rho(a: str, b: str) -> float:
        u, v = np.array(rows[a]), np.array(rows[b])
        ok = np.isfinite(u) & np.isfinite(v)
        return float(spearmanr(u[ok], v[ok]).statistic)

    out = {"pool": args.pool, "metric_channels": args.channels, "metric_batch": args.batch,
           "metric_seconds": time.perf_counter() - t0,
           "spearman_old_vs_new": {o: rho(f"8:{o}", f"5:{n}") for o, n in zip(OLD, NEW)},
           "spearman_definition_only_5_cells": {"synflow vs synflow_bn": rho("5:synflow", "5:synflow_bn"),
                                                "fisher vs fisher_fanin": rho("5:fisher", "5:fisher_fanin")},
           "spearman_definition_only_8_cells": {"synflow vs synflow_bn": rho("8:synflow", "8:synflow_bn"),
                                                "fisher vs fisher_fanin": rho("8:fisher", "8:fisher_fanin")},
           "spearman_network_only_8_vs_5": {m: rho(f"8:{m}", f"5:{m}") for m in OLD}}
    print(json.dumps(out, indent=1), flush=True)
    if not args.skip_search:
        params = RoBoTParams(pool_size=args.search_pool, metric_channels=args.search_channels, queries=args.queries,
                             bo_queries=args.queries, max_bo_iterations=args.queries,
                             query_train={"epochs": args.query_epochs, "init_channels": args.query_channels})
        t1 = time.perf_counter()
        found = RoBoT().search(data, params, 0, log=lambda m: print("  " + m, flush=True))
        out["search"] = {"params": params.model_dump(), "seconds": time.perf_counter() - t1,
                         "genotype": found["genotype"], "best_acc": found["best_acc"],
                         "returned_pool_index": found["returned_pool_index"],
                         "trained": [{"pool_index": t["pool_index"], "acc": t["acc"]} for t in found["trained"]],
                         "bo_proposals": sum(h["phase"] == "bo" for h in found["history"]),
                         "query_split": found["query_split"], "metric_seconds": found["metric_seconds"]}
        print(json.dumps({k: v for k, v in out["search"].items() if k != "params"}, indent=1), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
