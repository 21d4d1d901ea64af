"""Seconds per Evas architecture score: the product's vmapped per-sample Jacobian against the slow
definition (one forward of the batch, one backward per logit: B·C backwards), measured in one run
on the same networks, generators and batch (real images when ``--npz`` is given).

  python benchmarks/evas_score.py [--npz ../shared/data/cifar10_subset.npz] [--batches 32,64] [--archs 2]
      [--full-batch 96] [--device cpu|cuda] [--out benchmarks/results/evas_score.json]

For each batch size and each of ``--archs`` random NB201 cells (seeded), one κ (one init) both ways,
checking that the two Θ agree; the ratio is reference/product seconds. Then the product's seconds
for a whole architecture score (median of 3 inits) at ``--full-batch`` (the paper's 96), which the
reference is too slow to repeat there on a CPU.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import sync

from naspoison.backdoor import TriggerGenerator
from naspoison.backdoor.score import trigger_ntk, trigger_ntk_reference, triggered
from naspoison.data.datasets import load_dataset
from naspoison.nas.evas import EvasParams, Scorer
from naspoison.spaces import nb201


def images(args) -> tuple[torch.Tensor, int]:
    if args.npz:
        data = load_dataset({"name": "npz", "path": args.npz})
    else:  # no real data: random images of the CIFAR shape
        x = np.random.default_rng(0).integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
        from naspoison.data.datasets import make_image_data

        data = make_image_data("random", x, np.arange(256) % 10, x[:10], np.arange(10))
    return data


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--npz")
    ap.add_argument("--batches", default="32,64")
    ap.add_argument("--archs", type=int, default=2)
    ap.add_argument("--full-batch", type=int, default=96)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out")
    args = ap.parse_args()
    data = images(args)
    dev = torch.device(args.device)
    rng = np.random.default_rng(0)
    archs = [nb201.from_index(int(i)) for i in rng.integers(0, nb201.N_ARCHS, args.archs)]
    x_all = torch.from_numpy(data.x_train[:max(int(b) for b in args.batches.split(","))]).permute(0, 3, 1, 2).float() / 255
    rows = []
    for b in (int(s) for s in args.batches.split(",")):
        for k, ops in enumerate(archs):
            torch.manual_seed(k)
            model = nb201.Network(ops, data.num_classes, in_channels=data.shape[2]).to(dev)
            gen = TriggerGenerator(data.shape[2]).to(dev)
            x = triggered(gen, x_all[:b].to(dev))
            trigger_ntk(model, x[:2])  # warm-up (vmap tracing, kernel selection)
            sync(dev)
            t = time.perf_counter()
            fast = trigger_ntk(model, x)
            sync(dev)
            t_fast = time.perf_counter() - t
            t = time.perf_counter()
            slow = trigger_ntk_reference(model, x)
            sync(dev)
            t_slow = time.perf_counter() - t
            err = float((fast.cpu() - slow.cpu()).abs().max() / slow.abs().max())
            row = {"batch": b, "arch": nb201.to_string(ops), "product_s": t_fast, "reference_s": t_slow,
                   "ratio": t_slow / t_fast, "max_rel_diff": err}
            rows.append(row)
            print(f"B={b:3d} arch {k}: product {t_fast:7.2f} s  reference {t_slow:8.2f} s  "
                  f"ratio {t_slow / t_fast:6.1f}x  max rel diff {err:.1e}", flush=True)
    scorer = Scorer(data, EvasParams(batch_size=args.full_batch), seed=0, device=args.device)
    per_arch = []
    for ops in archs:
        t = time.perf_counter()
        scorer.compute(ops)
        sync(dev)
        per_arch.append(time.perf_counter() - t)
    print(f"whole architecture score (3 inits, B={args.full_batch}, C=16, 5 cells a stage): "
          f"{statistics.mean(per_arch):.2f} s on {args.device} (mean of {len(per_arch)})")
    out = {"device": str(dev), "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows,
           "per_arch_seconds": per_arch, "full_batch": args.full_batch,
           "median_ratio_by_batch": {str(b): statistics.median(r["ratio"] for r in rows if r["batch"] == b)
                                     for b in sorted({r["batch"] for r in rows})}}
    print("median ratio by batch:", out["median_ratio_by_batch"])
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
