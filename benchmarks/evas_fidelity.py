"""Issue 19 measurements (Evas fidelity), reduced scale, CIFAR-10 subset, one thread.

  # 1. one clean NB201 model, saved for the generator parts (identical in both code versions: train.py unchanged)
  python benchmarks/evas_fidelity.py model --npz ../shared/data/cifar10_subset.npz --state /tmp/evas_fid_model.pt
  # 2. the generator (mask area, ASR, trigger diversity) with the code under test; run it once with
  #    PYTHONPATH at a checkout of the pre-fix commit and once at this one ("--label" names the run)
  python benchmarks/evas_fidelity.py generator --npz ... --state /tmp/evas_fid_model.pt --label before --out X.json
  # 3. the score under both regimes on the same cells, inits and batch; 4. STRIP under both positive rules
  python benchmarks/evas_fidelity.py score --npz ... --cells 24 --out benchmarks/results/evas_fidelity_score.json
  python benchmarks/evas_fidelity.py strip --npz ... --state /tmp/evas_fid_model.pt --out ...
  python benchmarks/evas_fidelity.py strip-planted --npz ... --poison 0.01 --out ...   # a BadNets-planted model

Everything used from naspoison in parts 1-2 exists in both versions (``train_generator``, ``attack_metrics``,
``GeneratorRecipe``, ``TriggerGenerator.mask/pattern``), so the same script measures both.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from naspoison.data.datasets import load_dataset
from naspoison.spaces import nb201

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def data(args):
    return load_dataset({"name": "npz", "path": args.npz})


def part_model(args):
    from naspoison.attacks.surrogate import SurrogateRecipe
    from naspoison.train import fit, seed_everything

    d = data(args)
    seed_everything(0)
    model = nb201.Network(nb201.parse(CELL), d.num_classes, args.channels, 1, 3)
    t = time.time()
    out = fit(model, d, SurrogateRecipe(epochs=args.model_epochs, batch_size=128, lr=0.05), 0)
    torch.save(model.state_dict(), args.state)
    return {"arch": CELL, "channels": args.channels, "cells_per_stage": 1, "epochs": args.model_epochs,
            "test_acc": out["test_acc"], "seconds": time.time() - t}


def load_model(args, d):
    model = nb201.Network(nb201.parse(CELL), d.num_classes, args.channels, 1, 3)
    model.load_state_dict(torch.load(args.state))
    return model.eval()


@torch.no_grad()
def trigger_stats(g, d, n=400, seed=0):
    """Mask area and the distance between two inputs' triggers on test images (pairs i, perm(i))."""
    g.eval()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(d.x_test), n, replace=False)
    x = torch.from_numpy(d.x_test[idx]).permute(0, 3, 1, 2).float() / 255
    m, p = g.mask(x), g.pattern(x)
    perm = torch.from_numpy(rng.permutation(n))
    t = m * p  # the trigger's content: what is pasted where
    rms = lambda a, b: (a - b).pow(2).flatten(1).mean(1).sqrt().mean().item()  # noqa: E731
    return {"mask_mean": m.mean().item(), "mask_area_over_half": (m > 0.5).float().mean().item(),
            "trigger_distance_rms": rms(t, t[perm]), "mask_distance_rms": rms(m, m[perm]),
            "pattern_distance_rms": rms(p, p[perm]), "pairs": n}


def part_generator(args):
    from naspoison.backdoor.attack import GeneratorRecipe, attack_metrics, train_generator

    d = data(args)
    model = load_model(args, d)
    fields = set(GeneratorRecipe.model_fields)
    kw = dict(variant=args.variant, channels=args.gen_channels, mask_epochs=args.mask_epochs,
              pattern_epochs=args.pattern_epochs, target=0)
    if args.old_optimiser and "adam_betas" in fields:  # isolate fixes 1-3 from the optimiser change (item 5)
        kw.update(adam_betas=[0.9, 0.999], lr_schedule="constant")
    recipe = GeneratorRecipe(**kw)
    torch.manual_seed(0)
    t = time.time()
    g, info = train_generator(model, d, recipe, seed=0)
    m = attack_metrics(model, g, d, 0)
    if args.save_generator:
        torch.save(g.state_dict(), args.save_generator)
    return {"label": args.label, "recipe": recipe.model_dump(), "acc": m["acc"], "asr": m["asr"],
            **trigger_stats(g, d), "train_mask_density_last": info["curves"]["mask_density"][-1],
            "train_asr_last": info["curves"]["pattern_asr"][-1], "seconds": time.time() - t}


def part_score(args):
    from scipy.stats import spearmanr

    from naspoison.nas.evas import Scorer, ScoreSetting

    d = data(args)
    rng = np.random.default_rng(7)
    cells = [nb201.from_index(int(i)) for i in rng.choice(nb201.N_ARCHS, args.cells, replace=False)]
    out = {}
    t0 = time.time()
    for regime in ("ours", "reference"):
        s = ScoreSetting(batch_size=args.score_batch, inits=args.inits, channels=args.score_channels,
                         cells_per_stage=1, generator_channels=32, regime=regime)
        scorer = Scorer(d, s, seed=0)  # same seed: the same batch and init seeds for both regimes
        t = time.time()
        out[regime] = {"scores": [scorer(c)["score"] for c in cells], "seconds": time.time() - t,
                       "batch_indices": scorer.batch_indices.tolist()[:5], "init_seeds": scorer.init_seeds}
    a, b = out["ours"]["scores"], out["reference"]["scores"]
    assert out["ours"]["batch_indices"] == out["reference"]["batch_indices"]
    rho = spearmanr(a, b).statistic
    pick = {r: nb201.to_string(cells[int(np.argmin(out[r]["scores"]))]) for r in out}
    rank_of_other = {r: int(np.argsort(np.argsort(out[o]["scores"]))[int(np.argmin(out[r]["scores"]))]) + 1
                     for r, o in (("ours", "reference"), ("reference", "ours"))}
    return {"cells": [nb201.to_string(c) for c in cells], "setting": {"batch_size": args.score_batch, "inits": args.inits,
            "channels": args.score_channels, "cells_per_stage": 1, "generator_channels": 32},
            "scores": {r: out[r]["scores"] for r in out}, "seconds": {r: out[r]["seconds"] for r in out},
            "spearman_rho": float(rho), "pick": pick,
            "rank_of_pick_under_the_other_regime": rank_of_other, "total_seconds": time.time() - t0}


def part_strip(args):
    from naspoison.backdoor import TriggerGenerator
    from naspoison.data.augment import channel_stats
    from naspoison.defenses import DEFENSES, Suspect
    from naspoison.defenses.strip import StripParams

    d = data(args)
    model = load_model(args, d)
    g = TriggerGenerator(3, args.variant, args.gen_channels, *channel_stats(d.x_train))
    g.load_state_dict(torch.load(args.load_generator))
    s = Suspect(model, g.eval(), d, 0, torch.device("cpu"))
    res = {}
    for rule in ("all", "successful"):
        r = DEFENSES["strip"]().run(s, StripParams(overlays=args.overlays, inputs=args.inputs, positives=rule))
        res[rule] = r
    return {"generator": args.load_generator, "acc_asr": s.acc_asr(), "overlays": args.overlays, "inputs": args.inputs,
            "auroc": {k: v["auroc"] for k, v in res.items()}, "n_triggered_all": res["all"]["n_triggered"],
            "n_successful": res["successful"]["n_successful"], "full": res}


def part_strip_planted(args):
    """A BadNets-planted CIFAR model (white 3x3 patch, bottom right, ``--poison`` of the training set relabelled to
    class 0), then STRIP under both positive rules."""
    from dataclasses import replace

    from naspoison.attacks.surrogate import SurrogateRecipe
    from naspoison.defenses import DEFENSES, Suspect
    from naspoison.defenses.strip import StripParams
    from naspoison.train import fit, seed_everything

    d = data(args)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(d.x_train), int(args.poison * len(d.x_train)), replace=False)
    x, y = d.x_train.copy(), d.y_train.copy()
    x[idx, -3:, -3:, :] = 255
    y[idx] = 0
    seed_everything(0)
    model = nb201.Network(nb201.parse(CELL), d.num_classes, args.channels, 1, 3)
    fit(model, replace(d, x_train=x, y_train=y), SurrogateRecipe(epochs=args.model_epochs, batch_size=128, lr=0.05), 0)

    def patch(x01):
        out = x01.clone()
        out[:, :, -3:, -3:] = 1.0
        return out

    s = Suspect(model.eval(), patch, d, 0, torch.device("cpu"))
    res = {rule: DEFENSES["strip"]().run(s, StripParams(overlays=args.overlays, inputs=args.inputs, positives=rule))
           for rule in ("all", "successful")}
    return {"poison": args.poison, "poisoned_images": len(idx), "acc_asr": s.acc_asr(), "overlays": args.overlays,
            "inputs": args.inputs, "auroc": {k: v["auroc"] for k, v in res.items()},
            "n_triggered_all": res["all"]["n_triggered"], "n_successful": res["successful"]["n_successful"], "full": res}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["model", "generator", "score", "strip", "strip-planted"])
    ap.add_argument("--npz", required=True)
    ap.add_argument("--state", default="/tmp/evas_fid_model.pt")
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--model-epochs", type=int, default=8)
    ap.add_argument("--variant", default="trojanzoo")
    ap.add_argument("--gen-channels", type=int, default=16)
    ap.add_argument("--mask-epochs", type=int, default=3)
    ap.add_argument("--pattern-epochs", type=int, default=3)
    ap.add_argument("--old-optimiser", action="store_true")
    ap.add_argument("--label", default="")
    ap.add_argument("--save-generator")
    ap.add_argument("--load-generator")
    ap.add_argument("--cells", type=int, default=24)
    ap.add_argument("--score-batch", type=int, default=32)
    ap.add_argument("--score-channels", type=int, default=8)
    ap.add_argument("--inits", type=int, default=3)
    ap.add_argument("--overlays", type=int, default=32)
    ap.add_argument("--inputs", type=int, default=200)
    ap.add_argument("--poison", type=float, default=0.01)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = {"model": part_model, "generator": part_generator, "score": part_score, "strip": part_strip,
           "strip-planted": part_strip_planted}[args.part](args)
    res["command_part"] = args.part
    text = json.dumps(res, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text if not args.part.startswith("strip") else json.dumps({k: v for k, v in res.items() if k != "full"}, indent=1))


if __name__ == "__main__":
    main()
