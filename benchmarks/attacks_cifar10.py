"""The three new attacks on real CIFAR-10 at a reduced scale, through the product's own code:
the surrogate's accuracy, what confidence-based label flipping changes, the GradPC target's accuracy
drop, the gradient-canceling objective before and after, and the accuracy of a small network
retrained on each poisoned set next to the same network trained on clean data (same recipe, seed).

  python benchmarks/attacks_cifar10.py --npz ../shared/data/cifar10_subset.npz --out attacks_cifar10.json

Scale knobs (paper values in brackets): surrogate width/epochs [64 / fully trained], GC steps [250].
With ``--victim-genotype`` the NAS-aware GC also runs, its victim that DARTS genotype trained on clean
data (θ = its weights, as for TE-NAS and RoBoT).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from naspoison.attacks import ATTACKS, AttackContext
from naspoison.attacks.gradient_canceling import GCParams, cancel_gradients
from naspoison.attacks.surrogate import SurrogateRecipe, surrogate_model
from naspoison.data.datasets import load_dataset
from naspoison.models import ResNet18
from naspoison.stages.victim import trained_weights
from naspoison.spaces.darts import Genotype
from naspoison.store import ArtifactCache
from naspoison.train import Recipe, build_eval_network, fit, seed_everything


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", required=True)
    ap.add_argument("--budgets", default="0.1,0.5")
    ap.add_argument("--surrogate-width", type=int, default=16)
    ap.add_argument("--surrogate-epochs", type=int, default=15)
    ap.add_argument("--gc-steps", type=int, default=20)
    ap.add_argument("--gc-lr", type=float, default=0.01)
    ap.add_argument("--gradpc-epsilon", type=float, default=0.005, help="relative l2 radius")
    ap.add_argument("--retrain-width", type=int, default=16, help="ResNet-18 width of the retrained small network")
    ap.add_argument("--retrain-epochs", type=int, default=10)
    ap.add_argument("--victim-genotype", help="JSON genotype: also run nas_gradient_canceling against it")
    ap.add_argument("--victim-epochs", type=int, default=3)
    ap.add_argument("--nas-budgets", help="budgets for nas_gradient_canceling (default: --budgets)")
    ap.add_argument("--artifacts", help="artifact cache folder (keeps the surrogate between runs; default: temporary)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out")
    args = ap.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    data = load_dataset({"name": "npz", "path": args.npz})
    print(f"data: {len(data.x_train)} train, {len(data.x_test)} test; {args.device}, {torch.get_num_threads()} threads",
          flush=True)
    out: dict = {"args": vars(args), "attacks": {}}
    tmp = tempfile.TemporaryDirectory()
    nas_budgets = [float(b) for b in args.nas_budgets.split(",")] if args.nas_budgets else budgets
    ctx = AttackContext(ArtifactCache(args.artifacts or tmp.name), {"name": "npz", "path": args.npz}, log=lambda m: print("  " + m, flush=True))
    surrogate = SurrogateRecipe(width=args.surrogate_width, epochs=args.surrogate_epochs)
    t0 = time.perf_counter()
    _, info = surrogate_model(data, surrogate, ctx, args.device)
    out["surrogate"] = {"width": args.surrogate_width, "epochs": args.surrogate_epochs, "test_acc": info["test_acc"],
                        "params": info["params"], "seconds": time.perf_counter() - t0}
    print(f"surrogate ResNet-18 (width {args.surrogate_width}): test accuracy {info['test_acc']:.4f}", flush=True)
    gc = {"steps": args.gc_steps, "lr": args.gc_lr, "gradpc": {"epsilon": args.gradpc_epsilon}}

    victim = None
    if args.victim_genotype:
        genotype = Genotype.from_dict(json.loads(args.victim_genotype))
        vrecipe = Recipe(epochs=args.victim_epochs, batch_size=96, init_channels=8, layers=5, auxiliary_weight=0.0)
        seed_everything(args.seed)
        victim = build_eval_network(genotype, data, vrecipe)
        vout = fit(victim, data, vrecipe, args.seed, args.device)
        out["nas_victim"] = {"genotype": genotype.to_dict(), "epochs": args.victim_epochs, "test_acc": vout["test_acc"]}
        print(f"NAS victim (DARTS genotype, C=8, 5 cells, {args.victim_epochs} epochs): {vout['test_acc']:.4f}", flush=True)
        victim_state = {k: v.clone() for k, v in victim.state_dict().items()}

    poisoned = {}
    for budget in budgets:
        for name in ("confidence_label_flip", "gradient_canceling", "nas_gradient_canceling"):
            if name == "nas_gradient_canceling" and (victim is None or budget not in nas_budgets):
                continue
            t0 = time.perf_counter()
            rng = np.random.default_rng([0, 0x9015])
            if name == "nas_gradient_canceling":
                victim.load_state_dict(victim_state)
                poison = cancel_gradients(victim.eval(), trained_weights(victim), data, budget,
                                          GCParams.model_validate(gc), rng, args.device, ctx.log)
            else:
                attack = ATTACKS[name]()
                params = {"surrogate": surrogate.model_dump()} | (gc if name == "gradient_canceling" else {})
                poison = attack.poison(data, budget, attack.Params.model_validate(params), rng, args.device, ctx)
            seconds = time.perf_counter() - t0
            s = {k: v for k, v in poison.summary.items() if k != "objective_curve"}
            if "objective_curve" in poison.summary:
                s["objective_curve"] = poison.summary["objective_curve"]
            out["attacks"].setdefault(name, {})[str(budget)] = {"seconds": seconds, **s}
            poisoned[(name, budget)] = poison.apply(data)
            brief = ({"objective": [s["objective_initial"], s["objective_final_uint8"]],
                      "target_acc": [s["target"]["test_acc_before"], s["target"]["test_acc_after"]]}
                     if "objective_initial" in s else {"histogram": s["new_label_histogram"]})
            print(f"{name} @ {budget:g}: {seconds:.1f} s {json.dumps(brief)}", flush=True)
            save(args.out, out)

    recipe = SurrogateRecipe(width=args.retrain_width, epochs=args.retrain_epochs)
    rows = []
    for label, d in [("clean", data)] + [(f"{n}@{b:g}", d) for (n, b), d in poisoned.items()]:
        t0 = time.perf_counter()
        seed_everything(args.seed)
        model = ResNet18(data.num_classes, data.shape[2], args.retrain_width)
        r = fit(model, d, recipe, args.seed, args.device)
        rows.append({"train_set": label, "test_acc": r["test_acc"], "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), flush=True)
        out["retrain"] = {"network": f"ResNet-18 width {args.retrain_width}", "epochs": args.retrain_epochs, "rows": rows}
        save(args.out, out)
    tmp.cleanup()


def save(path: str | None, out: dict) -> None:
    """Written after every step, so a long run that is stopped keeps what it measured."""
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
