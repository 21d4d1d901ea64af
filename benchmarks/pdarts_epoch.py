"""One P-DARTS search epoch (after warm-up: an Adam step on the alphas, then an SGD step on the weights,
per batch) through the product's loop (``naspoison.nas.pdarts._train_stage``: both halves resident on
the device, on-device augmentation, one host sync per epoch) against the plain loop of DARTS-style code
(two DataLoaders of PIL images with CPU transforms, ``loss.item()`` every step). Same supernet, same
data, same device, alternated repeats.

  python benchmarks/pdarts_epoch.py --npz ../shared/data/cifar10_subset.npz --out benchmarks/results/pdarts_epoch_cpu.json
      [--device cuda --cells 5 --channels 16 --batch 96 --search-size 2000]
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
from _common import add_repeats, comparison_parser, timed, write_comparison
from plain_loader import plain_loader
from torch import nn

from naspoison.data.datasets import load_dataset
from naspoison.nas.pdarts import PDARTSParams, _split, _train_stage
from naspoison.spaces.darts import EDGES, OP_NAMES
from naspoison.spaces.darts_supernet import SuperNetwork
from naspoison.train import seed_everything


def plain_epoch(model, w_half, a_half, stats_from, p: PDARTSParams, device, workers: int) -> None:
    w_loader = plain_loader(*w_half, stats_from, p.batch_size, p.crop_padding, True, workers, device)
    a_loader = itertools.cycle(plain_loader(*a_half, stats_from, p.batch_size, p.crop_padding, True, workers, device))
    w_params, a_params = model.weight_parameters(), model.arch_parameters()
    opt_w = torch.optim.SGD(w_params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    opt_a = torch.optim.Adam(a_params, lr=p.arch_lr, betas=p.arch_betas, weight_decay=p.arch_weight_decay)
    criterion = nn.CrossEntropyLoss()
    model.train()
    for xb, yb in w_loader:
        xa, ya = next(a_loader)
        xa, ya = xa.to(device), ya.to(device)
        loss_a = criterion(model(xa), ya)
        opt_a.zero_grad()
        loss_a.backward()
        nn.utils.clip_grad_norm_(a_params, p.grad_clip)
        opt_a.step()
        xb, yb = xb.to(device), yb.to(device)
        loss = criterion(model(xb), yb)
        opt_w.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(w_params, p.grad_clip)
        opt_w.step()
        loss_a.item(), loss.item()  # the usual per-step logging: host syncs every step


def main():
    ap = comparison_parser()
    ap.add_argument("--cells", type=int, default=5)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--search-size", type=int, default=1000)
    add_repeats(ap)
    args = ap.parse_args()
    device = torch.device(args.device)
    data = load_dataset({"name": "npz", "path": args.npz})
    p = PDARTSParams(cells=[args.cells], ops_kept=[1], skip_dropout=[0.0], epochs=2, warmup_epochs=1,
                     batch_size=args.batch, init_channels=args.channels, search_size=args.search_size)
    w_half, a_half, split = _split(data, p, 0, device)
    host = lambda h: (h.x.permute(0, 2, 3, 1).cpu().numpy(), h.y.cpu().numpy())
    stats_from = np.concatenate([host(w_half)[0], host(a_half)[0]])
    one_epoch = p.model_copy(update={"epochs": 1, "warmup_epochs": 0})

    def supernet():
        seed_everything(0)
        net = SuperNetwork([list(OP_NAMES) for _ in EDGES], [list(OP_NAMES) for _ in EDGES], p.init_channels,
                           args.cells, data.num_classes, in_channels=data.shape[2]).to(device)
        return net.to(memory_format=torch.channels_last) if device.type == "cuda" else net

    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for r in range(args.repeats):
        lean = timed(lambda: _train_stage(supernet(), w_half, a_half, one_epoch, 0.0, gen, lambda m: None), device)
        plain = timed(lambda: plain_epoch(supernet(), host(w_half), host(a_half), stats_from, p, device, args.workers),
                      device)
        rows.append({"lean_s": lean, "plain_s": plain, "ratio": plain / lean})
        print(f"repeat {r}: lean {lean:.1f} s, plain {plain:.1f} s per search epoch, ratio {plain / lean:.2f}x", flush=True)
    write_comparison(args, device, rows, split=split)


if __name__ == "__main__":
    main()
