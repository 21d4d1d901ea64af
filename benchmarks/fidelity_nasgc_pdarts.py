"""NAS-aware gradient canceling against P-DARTS (issue 18, item 1): the GradPC target on the converged
supernet's alphas under the old relative radius (0.005·‖α‖) and the authors' absolute l2 radius 1.0.
For each: radius, ‖α‖, the target's test accuracy, how many of the 16 genotype entries it changes,
the change of the softmax weights, and the poison objective curve (a few GC steps).

  python benchmarks/fidelity_nasgc_pdarts.py --scale demo --out benchmarks/results/fidelity_nasgc_pdarts_demo.json
  python benchmarks/fidelity_nasgc_pdarts.py --scale cifar --npz /work/shared/data/cifar10_subset.npz \
      --out benchmarks/results/fidelity_nasgc_pdarts_cifar10.json

demo: the demo profile's P-DARTS (digits, 3/4/5 cells, 4 channels, 3 epochs, 400 images) seed 0.
cifar: 3/4/5 cells, 4 channels, 3 epochs (1 warm-up), 600 search images of the CIFAR-10 subset, seed 0.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from naspoison.attacks.base import AttackContext
from naspoison.attacks.gradient_canceling import GradPCParams
from naspoison.attacks.nas_gradient_canceling import NASGCParams, NASGradientCanceling
from naspoison.data.datasets import load_dataset
from naspoison.nas.pdarts import PDARTS, PDARTSParams
from naspoison.spaces.darts_supernet import PairOutput
from naspoison.stages.victim import Victim, _supernet_architecture


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=["demo", "cifar"], required=True)
    ap.add_argument("--npz")
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--gc-steps", type=int, default=10)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.scale == "demo":
        data = load_dataset({"name": "digits"})
        params = PDARTSParams(cells=[3, 4, 5], skip_dropout=[0.0, 0.4, 0.7], epochs=3, warmup_epochs=1, batch_size=64,
                              init_channels=4, search_size=400, crop_padding=1, flip=False)
    else:
        data = load_dataset({"name": "npz", "path": args.npz})
        params = PDARTSParams(cells=[3, 4, 5], skip_dropout=[0.1, 0.4, 0.7], epochs=3, warmup_epochs=1, batch_size=64,
                              init_channels=4, search_size=600)
    t0 = time.perf_counter()
    keep: dict = {}
    found = PDARTS().search(data, params, 0, keep=keep, log=lambda m: print("  " + m, flush=True))
    search_s = time.perf_counter() - t0
    state = {k: v.clone() for k, v in keep["supernet"].state_dict().items()}
    out = {"scale": args.scale, "pdarts_params": params.model_dump(), "search_seconds": search_s,
           "n_train": len(data.y_train), "n_test": len(data.y_test), "genotype": found["genotype"],
           "budget": args.budget, "gc_steps": args.gc_steps, "targets": {}}
    settings = {"relative_0.005 (old)": GradPCParams(),
                "absolute_l2_1.0 (authors')": GradPCParams(epsilon=1.0, relative=False)}
    for name, gp in settings.items():
        net = keep["supernet"]
        net.load_state_dict(state)
        victim = Victim(PairOutput(net).eval(), [("alpha_normal", net.alpha_normal), ("alpha_reduce", net.alpha_reduce)],
                        {"algorithm": "pdarts", "seed": 0}, lambda net=net: _supernet_architecture(net, params.skip_cap))
        p = NASGCParams(steps=args.gc_steps, gradpc_by_victim={"pdarts": gp})
        t1 = time.perf_counter()
        try:
            poison = NASGradientCanceling().poison(data, args.budget, p, np.random.default_rng(0),
                                                   ctx=AttackContext(victim=victim, log=lambda m: print("  " + m, flush=True)))
        except ValueError as e:
            out["targets"][name] = {"refused": str(e)}
            print(f"{name}: refused: {e}", flush=True)
            continue
        s = poison.summary
        t = s["target"]
        arch = t["architecture"]
        out["targets"][name] = {
            "radius": t["radius"], "theta0_norm": t["theta0_norm"], "distance": t["distance"],
            "test_acc_before": t["test_acc_before"], "test_acc_after": t["test_acc_after"],
            "test_loss_before": t["test_loss_before"], "test_loss_after": t["test_loss_after"],
            "test_predictions_changed": t["test_predictions_changed"],
            "genotype_entries_changed": arch["genotype_entries_changed"],
            "probs_max_abs_change": arch["probs_max_abs_change"], "probs_mean_abs_change": arch["probs_mean_abs_change"],
            "genotype_before": arch["genotype_before"], "genotype_after": arch["genotype_after"],
            "objective_curve": s["objective_curve"], "objective_final_uint8": s["objective_final_uint8"],
            "seconds": time.perf_counter() - t1}
        print(json.dumps({k: v for k, v in out["targets"][name].items()
                          if k not in ("genotype_before", "genotype_after")}), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
