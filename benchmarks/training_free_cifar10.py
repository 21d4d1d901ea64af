"""TE-NAS and RoBoT on real CIFAR-10 at a reduced scale: the genotypes they find, seconds per
TE-NAS pruning round and for RoBoT's metrics and queries, and the found genotypes' accuracy after
a short retrain next to random architectures trained the same way (same recipe, same seeds as
benchmarks/pdarts_cifar10.py, so its random rows are comparable).

  python benchmarks/training_free_cifar10.py --npz ../shared/data/cifar10_subset.npz --out tf_cifar10.json

TE-NAS runs its paper proxies (NTK batch 14, 1 channel, 3x1000 3x3 crops); only ``--tenas-repeats``
is reduced. RoBoT's pool, query budget and query training are shrunk by the flags.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from retrain_common import add_retrain_args, retrain_next_to_random

from naspoison.data.datasets import load_dataset, make_image_data
from naspoison.nas.robot import RoBoT, RoBoTParams
from naspoison.nas.tenas import TENAS, TENASParams
from naspoison.spaces.darts import Genotype


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tenas-repeats", type=int, default=1, help="(paper: 3)")
    ap.add_argument("--pool", type=int, default=200, help="RoBoT pool (paper: 60,000)")
    ap.add_argument("--queries", type=int, default=6, help="(paper: 25)")
    ap.add_argument("--bo-queries", type=int, default=4)
    ap.add_argument("--metric-channels", type=int, default=8, help="(paper: 16)")
    ap.add_argument("--metric-layers", type=int, default=5, help="(paper: 8)")
    ap.add_argument("--query-epochs", type=int, default=2, help="(paper: 10)")
    ap.add_argument("--query-size", type=int, default=2000, help="training images RoBoT's queries split 50/50")
    add_retrain_args(ap)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out")
    args = ap.parse_args()
    data = load_dataset({"name": "npz", "path": args.npz})
    print(f"data: {len(data.x_train)} train, {len(data.x_test)} test; device {args.device}, "
          f"{torch.get_num_threads()} threads", flush=True)
    record: dict = {"args": vars(args)}

    tp = TENASParams(repeats=args.tenas_repeats)
    t0 = time.perf_counter()
    tenas = TENAS().search(data, tp, args.seed, device=args.device, log=lambda m: print("  tenas " + m, flush=True))
    record["tenas"] = {"seconds": time.perf_counter() - t0, "genotype": tenas["genotype"],
                       "rounds": [{"phase": r["phase"], "candidates": len(r["candidates"]), "seconds": r["seconds"]}
                                  for r in tenas["rounds"]]}
    print(f"TE-NAS: {record['tenas']['seconds']:.0f} s; {json.dumps(tenas['genotype'])}", flush=True)

    rp = RoBoTParams.model_validate({
        "pool_size": args.pool, "queries": args.queries, "bo_queries": args.bo_queries, "init_points": 2,
        "metric_channels": args.metric_channels, "metric_layers": args.metric_layers,
        "query_train": {"epochs": args.query_epochs, "init_channels": args.retrain_channels,
                        "layers": args.retrain_layers}})
    query_data = data
    if args.query_size < len(data.y_train):  # RoBoT sees a seeded subset here only to fit the CPU budget
        idx = np.sort(np.random.default_rng([args.seed, 7]).choice(len(data.y_train), args.query_size, replace=False))
        query_data = make_image_data(data.name, data.x_train[idx], data.y_train[idx], data.x_test, data.y_test,
                                     data.num_classes)
    t0 = time.perf_counter()
    robot = RoBoT().search(query_data, rp, args.seed, device=args.device, log=lambda m: print("  robot " + m, flush=True))
    record["robot"] = {"seconds": time.perf_counter() - t0, "metric_seconds": robot["metric_seconds"],
                       "genotype": robot["genotype"], "best_acc": robot["best_acc"], "best_w": robot["best_w"],
                       "trained": [{k: t[k] for k in ("pool_index", "acc", "metrics")} for t in robot["trained"]]}
    print(f"RoBoT: {record['robot']['seconds']:.0f} s ({robot['metric_seconds']:.0f} s of metrics for {args.pool} "
          f"architectures); best query accuracy {robot['best_acc']:.4f}; {json.dumps(robot['genotype'])}", flush=True)

    found = [("tenas", Genotype.from_dict(tenas["genotype"])), ("robot", Genotype.from_dict(robot["genotype"]))]
    record["retrained"] = retrain_next_to_random(found, data, args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
