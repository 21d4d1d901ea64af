"""Retrain throughput: the product's training loop (``naspoison.train.fit``: data resident on the device,
on-device crop/flip/cutout, bf16 autocast and channels_last on CUDA, one host sync per epoch) against
the plain loop most NAS code uses (a torchvision-style Dataset of PIL images, CPU transforms, a
DataLoader, ``loss.item()`` every step), same network, same recipe, same device, one run.

  python benchmarks/retrain_epoch.py --npz ../shared/data/cifar10_subset.npz --out benchmarks/results/retrain_epoch_cpu.json
      [--device cuda --channels 36 --layers 20 --batch 96 --epochs 2 --workers 2]

Images/s counts training images over whole epochs (the test pass each epoch included in both loops).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from _common import add_repeats, comparison_parser, timed, write_comparison
from plain_loader import plain_loader
from torch import nn

from naspoison.data.datasets import load_dataset
from naspoison.spaces.darts import sample_genotype
from naspoison.train import Recipe, build_eval_network, fit, seed_everything


def plain_fit(model, data, recipe: Recipe, device, workers: int, on_epoch=None) -> None:
    """The reference: what a DataLoader + CPU-augmentation training script does, epoch for epoch.
    ``on_epoch(epoch)`` is called after each epoch's test pass (gpu_check.py times epochs with it)."""
    train = plain_loader(data.x_train, data.y_train, data.x_train, recipe.batch_size, recipe.crop_padding, True,
                         workers, device)
    test = plain_loader(data.x_test, data.y_test, data.x_train, recipe.eval_batch_size, 0, False, workers, device)
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(recipe.epochs):
        model.train()
        model.drop_path_prob = recipe.drop_path_prob * epoch / recipe.epochs
        total = 0.0
        for xb, yb in train:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            logits, aux = model(xb)
            loss = criterion(logits, yb)
            if aux is not None:
                loss = loss + recipe.auxiliary_weight * criterion(aux, yb)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
            total += loss.item()  # the usual per-step logging: a host sync every step
        sched.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for xb, yb in test:
                correct += (model(xb.to(device))[0].argmax(1).cpu() == yb).sum().item()
        if not math.isfinite(total):
            raise FloatingPointError("diverged")
        if on_epoch:
            on_epoch(epoch)


def main():
    ap = comparison_parser()
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=2)
    add_repeats(ap)
    args = ap.parse_args()
    device = torch.device(args.device)
    data = load_dataset({"name": "npz", "path": args.npz})
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch, init_channels=args.channels, layers=args.layers)
    genotype = sample_genotype(np.random.default_rng(0))

    def network():
        seed_everything(0)
        return build_eval_network(genotype, data, recipe)

    n = len(data.x_train) * args.epochs
    rows = []
    for r in range(args.repeats):  # alternated, so drift on a shared machine hits both
        lean = timed(lambda: fit(network(), data, recipe, 0, device), device)
        plain = timed(lambda: plain_fit(network(), data, recipe, device, args.workers), device)
        rows.append({"lean_img_s": n / lean, "plain_img_s": n / plain, "ratio": plain / lean})
        print(f"repeat {r}: lean {n / lean:.0f} img/s, plain {n / plain:.0f} img/s, ratio {plain / lean:.2f}x", flush=True)
    write_comparison(args, device, rows, n_train=len(data.x_train),
                     params=sum(p.numel() for p in network().parameters()))


if __name__ == "__main__":
    main()
