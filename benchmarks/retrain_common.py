"""Shared by the CIFAR-10 benchmarks: retrain found genotypes next to random ones, same recipe and seed."""
from __future__ import annotations

import json
import time

import numpy as np

from naspoison.spaces.darts import Genotype, sample_genotype
from naspoison.train import Recipe, train_genotype


def add_retrain_args(ap) -> None:
    ap.add_argument("--random-archs", type=int, default=3, help="random genotypes (seeds 0..n-1) trained alongside")
    ap.add_argument("--retrain-epochs", type=int, default=5)
    ap.add_argument("--retrain-channels", type=int, default=8)
    ap.add_argument("--retrain-layers", type=int, default=5)


def retrain_next_to_random(found: list[tuple[str, Genotype]], data, args) -> list[dict]:
    """Train each found genotype and ``args.random_archs`` random ones with one short recipe."""
    recipe = Recipe(epochs=args.retrain_epochs, batch_size=96, init_channels=args.retrain_channels,
                    layers=args.retrain_layers)
    candidates = found + [(f"random{i}", sample_genotype(np.random.default_rng(i))) for i in range(args.random_archs)]
    rows = []
    for name, g in candidates:
        t0 = time.perf_counter()
        out = train_genotype(g, data, recipe, args.seed, device=args.device)
        rows.append({"arch": name, "test_acc": out["test_acc"], "params": out["params"],
                     "s_per_epoch": (time.perf_counter() - t0) / args.retrain_epochs})
        print(json.dumps(rows[-1]), flush=True)
    rand = [100 * r["test_acc"] for r in rows if r["arch"].startswith("random")]
    head = f"retrain ({args.retrain_epochs} epochs, C={args.retrain_channels}, {args.retrain_layers} cells): "
    found_txt = "; ".join(f"{r['arch']} {100 * r['test_acc']:.2f} %" for r in rows if not r["arch"].startswith("random"))
    rand_txt = (f"; random {np.mean(rand):.2f} ± {np.std(rand, ddof=1) if len(rand) > 1 else 0:.2f} % (n={len(rand)})"
                if rand else "")
    print(head + found_txt + rand_txt, flush=True)
    return rows
