"""The three backdoor defenses (Evas Tables 4-5) on real CIFAR-10 at a reduced scale (CPU): the Evas cell
found by ``benchmarks/evas_cifar10.py`` (read from its results file) and ResNet-18, each trained on clean
data with its trigger generator, then Neural Cleanse, STRIP and Fine-Pruning on both. Saves after every
step, so an interrupted run keeps what it measured.

  python benchmarks/defenses_cifar10.py --npz ../shared/data/cifar10_subset.npz \\
      --search benchmarks/results/evas_cifar10.json --out benchmarks/results/defenses_cifar10.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from naspoison.backdoor.attack import GeneratorRecipe
from naspoison.backdoor.evaluate import RESNET18, ModelRecipe, backdoor_cell
from naspoison.backdoor.scenarios import FinetuneRecipe
from naspoison.data.datasets import load_dataset
from naspoison.defenses import DEFENSES, Suspect
from naspoison.defenses.fine_pruning import FinePruningParams
from naspoison.defenses.neural_cleanse import NeuralCleanseParams
from naspoison.defenses.strip import StripParams


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", required=True)
    ap.add_argument("--search", required=True, help="results of benchmarks/evas_cifar10.py (its found cell)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--cells", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--resnet-width", type=int, default=16)
    ap.add_argument("--gen-channels", type=int, default=16)
    ap.add_argument("--mask-epochs", type=int, default=3)
    ap.add_argument("--pattern-epochs", type=int, default=10)
    ap.add_argument("--nc-epochs", type=int, default=30)
    ap.add_argument("--nc-samples", type=int, default=500)
    ap.add_argument("--strip-overlays", type=int, default=50)
    ap.add_argument("--strip-inputs", type=int, default=300)
    ap.add_argument("--fp-finetune-epochs", type=int, default=3)
    args = ap.parse_args()
    data = load_dataset({"name": "npz", "path": args.npz})
    evas_arch = json.loads(Path(args.search).read_text())["search"]["arch"]
    out = {"args": vars(args), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "n_train": len(data.x_train), "n_test": len(data.x_test), "rows": []}

    def save():
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")

    recipe = ModelRecipe(epochs=args.epochs, batch_size=128, channels=args.channels, cells_per_stage=args.cells,
                         resnet_width=args.resnet_width)
    gen_recipe = GeneratorRecipe(channels=args.gen_channels, mask_epochs=args.mask_epochs,
                                 pattern_epochs=args.pattern_epochs)
    params = {"neural_cleanse": NeuralCleanseParams(epochs=args.nc_epochs, samples=args.nc_samples, batch_size=50),
              "strip": StripParams(overlays=args.strip_overlays, inputs=args.strip_inputs),
              "fine_pruning": FinePruningParams(samples=args.nc_samples, finetune=FinetuneRecipe(
                  epochs=args.fp_finetune_epochs, batch_size=96))}
    for name, arch in (("evas", evas_arch), ("resnet18", RESNET18)):
        t = time.time()
        model, gen, res = backdoor_cell(arch, data, recipe, gen_recipe, seed=0, log=print)
        row = {"row": name, "arch": arch, "acc": res["acc"], "asr": res["asr"], "params": res["params"],
               "train_seconds": time.time() - t, "defenses": {}}
        out["rows"].append(row)
        print(f"{name}: ACC {100 * res['acc']:.2f} ASR {100 * res['asr']:.2f} ({row['train_seconds']:.0f} s)", flush=True)
        save()
        gen = gen.eval().requires_grad_(False)
        s = Suspect(model, lambda x, g=gen: g(x), data, gen_recipe.target, torch.device("cpu"))
        for defense, p in params.items():
            t = time.time()
            result = DEFENSES[defense]().run(s, p, print)
            result.pop("masks", None)
            row["defenses"][defense] = {"seconds": time.time() - t, **result}
            print(f"{name} {defense} ({time.time() - t:.0f} s): "
                  + json.dumps({k: v for k, v in result.items() if k not in ("curve", "l1", "anomaly_index", "reached")}),
                  flush=True)
            save()


if __name__ == "__main__":
    main()
