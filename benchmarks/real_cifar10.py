"""Accuracy of a few random DARTS architectures on real CIFAR-10 after a small budget, and seconds
per epoch on this machine, through the product's own npz loader and retraining recipe.

  python benchmarks/real_cifar10.py --npz ../shared/data/cifar10_subset.npz --archs 3 --epochs 10

Any .npz with x_train, y_train, x_test, y_test (uint8 NHWC) works, e.g. the output of
``../shared/tools/decode_cifar10.py`` for all 60,000 images.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from naspoison.data.datasets import load_dataset
from naspoison.spaces.darts import sample_genotype
from naspoison.train import Recipe, train_genotype


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", required=True)
    ap.add_argument("--archs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=96)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    data = load_dataset({"name": "npz", "path": args.npz})
    print(f"data: {len(data.x_train)} train, {len(data.x_test)} test, shape {data.shape}, device {args.device}, "
          f"{torch.get_num_threads()} threads")
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, init_channels=args.channels, layers=args.layers)
    rows = []
    for seed in range(args.archs):
        g = sample_genotype(np.random.default_rng(seed))
        t0 = time.perf_counter()
        out = train_genotype(g, data, recipe, seed, device=args.device,
                             on_epoch=lambda e, m, seed=seed: print(f"  seed {seed} epoch {e}: loss {m['train_loss']:.3f} "
                                                         f"test {100 * m['test_acc']:.1f}%", flush=True))
        wall = time.perf_counter() - t0
        rows.append({"seed": seed, "test_acc": out["test_acc"], "params": out["params"],
                     "seconds_per_epoch": wall / args.epochs})
        print(json.dumps(rows[-1]), flush=True)
    accs = [100 * r["test_acc"] for r in rows]
    print(f"final-epoch test accuracy {np.mean(accs):.2f} ± {np.std(accs, ddof=1) if len(accs) > 1 else 0:.2f} % "
          f"over {len(rows)} random architectures; {np.mean([r['seconds_per_epoch'] for r in rows]):.1f} s/epoch")


if __name__ == "__main__":
    main()
