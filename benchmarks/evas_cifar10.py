"""Evas on real CIFAR-10 at a reduced scale (CPU): search, then ACC/ASR of the found cell, ResNet-18 and
random cells, and the Spearman correlation of the trigger-NTK score with ASR (Evas Figure 2) over every
NB201 cell evaluated. Saves after every architecture, so an interrupted run keeps what it measured.

  python benchmarks/evas_cifar10.py --npz ../shared/data/cifar10_subset.npz --out benchmarks/results/evas_cifar10.json
      [--channels 8 --cells 2 --epochs 10 --steps 60 --extra-random 8 --budget-minutes 40]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from naspoison.backdoor.attack import GeneratorRecipe
from naspoison.backdoor.evaluate import RESNET18, ModelRecipe, backdoor_cell
from naspoison.data.datasets import load_dataset
from naspoison.nas.evas import EvasParams, EvasSearch, Scorer
from naspoison.spaces import nb201


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--cells", type=int, default=2)
    ap.add_argument("--score-batch", type=int, default=48)
    ap.add_argument("--pool", type=int, default=20)
    ap.add_argument("--sample", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--resnet-width", type=int, default=16)
    ap.add_argument("--gen-channels", type=int, default=16)
    ap.add_argument("--mask-epochs", type=int, default=2)
    ap.add_argument("--pattern-epochs", type=int, default=3)
    ap.add_argument("--extra-random", type=int, default=8)
    ap.add_argument("--budget-minutes", type=float, default=40)
    args = ap.parse_args()
    t_start = time.time()
    data = load_dataset({"name": "npz", "path": args.npz})
    out = {"args": vars(args), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "n_train": len(data.x_train), "n_test": len(data.x_test), "rows": []}

    def save():
        rows = [r for r in out["rows"] if r["arch"] != RESNET18]
        if len(rows) >= 3:
            rho, p = spearmanr([r["score"] for r in rows], [r["asr"] for r in rows])
            out["spearman_score_asr"] = {"rho": float(rho), "p": float(p), "n": len(rows)}
            rho, p = spearmanr([r["score"] for r in rows], [r["acc"] for r in rows])
            out["spearman_score_acc"] = {"rho": float(rho), "p": float(p), "n": len(rows)}
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")

    params = EvasParams(batch_size=args.score_batch, channels=args.channels, cells_per_stage=args.cells,
                        generator_channels=args.gen_channels, pool_size=args.pool, sample_size=args.sample,
                        steps=args.steps)
    t = time.time()
    found = EvasSearch().search(data, params, seed=0, log=print)
    out["search"] = {k: found[k] for k in ("arch", "score", "distinct_archs", "scores_computed")}
    out["search"]["seconds"] = time.time() - t
    out["search"]["history"] = found["history"]
    print(f"search: {out['search']['seconds']:.0f} s, found {found['arch']} (score {found['score']:.4g})", flush=True)
    save()
    scorer = Scorer(data, params, seed=0)  # same batch and init seeds as the search
    recipe = ModelRecipe(epochs=args.epochs, batch_size=128, channels=args.channels, cells_per_stage=args.cells,
                         resnet_width=args.resnet_width)
    gen = GeneratorRecipe(channels=args.gen_channels, mask_epochs=args.mask_epochs, pattern_epochs=args.pattern_epochs)
    rng = np.random.default_rng([0, 0x201])
    randoms = [nb201.to_string(nb201.from_index(int(i))) for i in rng.integers(0, nb201.N_ARCHS, 2 + args.extra_random)]
    plan = [("evas", found["arch"]), ("resnet18", RESNET18), ("random_1", randoms[0]), ("random_2", randoms[1])]
    plan += [(f"random_{i + 3}", a) for i, a in enumerate(randoms[2:])]
    for name, arch in plan:
        if time.time() - t_start > 60 * args.budget_minutes:
            print(f"time budget reached; {name} and later rows left out", flush=True)
            out["left_out"] = [n for n, _ in plan[plan.index((name, arch)):]]
            break
        t = time.time()
        _, _, res = backdoor_cell(arch, data, recipe, gen, seed=0, log=lambda m: None)
        row = {"row": name, "arch": arch, "acc": res["acc"], "asr": res["asr"], "params": res["params"],
               "seconds": time.time() - t, "pattern_train_asr": res["generator_curves"]["pattern_asr"]}
        if arch != RESNET18:
            row["score"] = scorer(nb201.parse(arch))["score"]
        out["rows"].append(row)
        print(f"{name:10s} ACC {100 * res['acc']:.2f}  ASR {100 * res['asr']:.2f}  score {row.get('score', float('nan')):.4g}"
              f"  ({row['seconds']:.0f} s)  {arch}", flush=True)
        save()
    print(json.dumps({k: out.get(k) for k in ("spearman_score_asr", "spearman_score_acc")}, indent=1))


if __name__ == "__main__":
    main()
