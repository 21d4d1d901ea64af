"""P-DARTS on real CIFAR-10 at a reduced scale: seconds per search epoch per stage, the genotype it
finds, and that genotype's accuracy after a short retrain next to random architectures trained the
same way (same recipe, same seeds), all through the product's own code.

  python benchmarks/pdarts_cifar10.py --npz ../shared/data/cifar10_subset.npz --out pdarts_cifar10.json

The structure is the paper's (3 stages, 8→5→3→1 ops, warm-up then alternating updates, skip
dropout 0.0/0.4/0.7, skip cap 2); depth, width, epochs and data are shrunk by the flags.
Any .npz with x_train, y_train, x_test, y_test (uint8 NHWC) works.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from retrain_common import add_retrain_args, retrain_next_to_random

from naspoison.data.datasets import load_dataset
from naspoison.nas.pdarts import PDARTS, PDARTSParams
from naspoison.spaces.darts import Genotype


def ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cells", type=ints, default=[5, 6, 7], help="cells per stage (paper: 5,11,17)")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per stage (paper: 25)")
    ap.add_argument("--warmup", type=int, default=2, help="weight-only epochs per stage (paper: 10)")
    ap.add_argument("--channels", type=int, default=8, help="supernet init channels (paper: 16)")
    ap.add_argument("--search-size", type=int, default=2000, help="training images the search uses (paper: 50,000)")
    ap.add_argument("--batch-size", type=int, default=64, help="(paper: 96)")
    add_retrain_args(ap)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", help="write every number here as JSON")
    ap.add_argument("--genotype", help="skip the search: retrain this genotype (JSON, as printed by a run) "
                                       "next to the random architectures")
    args = ap.parse_args()

    data = load_dataset({"name": "npz", "path": args.npz})
    dev = args.device if args.device != "cuda" else f"cuda ({torch.cuda.get_device_name()})"
    print(f"data: {len(data.x_train)} train, {len(data.x_test)} test, shape {data.shape}; device {dev}, "
          f"{torch.get_num_threads()} threads", flush=True)
    params = PDARTSParams(cells=args.cells, skip_dropout=[0.0, 0.4, 0.7], epochs=args.epochs,
                          warmup_epochs=args.warmup, init_channels=args.channels, batch_size=args.batch_size,
                          search_size=args.search_size)
    if args.genotype:
        retrain(Genotype.from_json(args.genotype), data, args, {"search": "skipped (--genotype)"})
        return
    epochs: list[dict] = []
    t0 = time.perf_counter()
    found = PDARTS().search(data, params, args.seed, device=args.device, log=lambda m: print("  " + m, flush=True),
                            on_epoch=epochs.append)
    search_seconds = time.perf_counter() - t0
    per_stage = []
    for s, cells in enumerate(args.cells):
        rows = [e for e in epochs if e["stage"] == s]
        warm = [e["seconds"] for e in rows if e["arch_loss"] is None]
        alt = [e["seconds"] for e in rows if e["arch_loss"] is not None]
        per_stage.append({"stage": s + 1, "cells": cells, "ops_per_edge": len(found["stages"][s]["ops"]["normal"][0]),
                          "s_per_warmup_epoch": statistics.mean(warm) if warm else None,
                          "s_per_alternating_epoch": statistics.mean(alt) if alt else None})
        print(json.dumps(per_stage[-1]), flush=True)
    genotype = Genotype.from_dict(found["genotype"])
    print(f"search: {search_seconds:.0f} s; genotype {genotype.to_json()}", flush=True)
    print(f"skip-connect variants: {[(v['cap'], v['banned']) for v in found['skip_variants']]}", flush=True)

    retrain(genotype, data, args, {"device": dev, "search_seconds": search_seconds, "per_stage": per_stage,
                                   "genotype": found["genotype"], "skip_variants": found["skip_variants"],
                                   "split": found["split"]})


def retrain(genotype: Genotype, data, args, record: dict) -> None:
    retrained = retrain_next_to_random([("pdarts", genotype)], data, args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), **record, "retrained": retrained}, f, indent=1)


if __name__ == "__main__":
    main()
