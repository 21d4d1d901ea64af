"""Seconds and peak memory of one gradient-canceling step (the hot loop of ``gradient_canceling``):
pass 1 accumulates g_poison chunk by chunk without a graph, pass 2 back-propagates
⟨residual, Σ_chunk ∇θ L⟩ to each chunk's pixels (double backward), then Adam and the projection.

Each configuration runs in its own process so its peak resident memory (ru_maxrss) is its own. The
chunk size trades memory for nothing else: the test suite checks the gradient is the same for every
chunk size, so peak memory should grow with the chunk, not with the number of poisons.

  python ../shared/tools/decode_cifar10.py /tmp/cifar10.npz
  python benchmarks/gc_step.py --npz /tmp/cifar10.npz --n 10000 --budget 0.5 --width 64 --chunks 250

The victim is a ResNet-18 at random initialisation in eval mode: a step's cost does not depend on
the weights' values.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(args) -> dict:
    import numpy as np
    import torch
    from _common import sync

    from naspoison.attacks.gradient_canceling import loss_gradient_sum, objective_pixel_gradient
    from naspoison.data.augment import channel_stats
    from naspoison.models import ResNet18

    device = torch.device(args.device)
    with np.load(args.npz, allow_pickle=False) as z:
        x, y = z["x_train"][:args.n], z["y_train"][:args.n]
    k = int(np.floor(args.budget * len(x) + 0.5))
    mean, std = (torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1) for v in channel_stats(x))
    x0 = torch.from_numpy(x[:k]).to(device).permute(0, 3, 1, 2).float() / 255
    yp = torch.from_numpy(y[:k]).long().to(device)
    torch.manual_seed(0)
    model = ResNet18(10, 3, args.width).to(device).eval()
    params = list(model.parameters())
    g_clean = [torch.randn_like(p) * 1e-3 for p in params]  # stands in for the cached clean gradient

    def normalise(t):
        return (t - mean) / std

    delta = torch.zeros_like(x0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=0.01)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB (Linux reports KiB)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        sync(device)
        t0 = time.perf_counter()
        images = x0 + delta.detach()
        g_poison = loss_gradient_sum(model, params, normalise, images, yp, args.chunk)
        share = k / len(x)
        r = [(1 - share) * gc + share * gp / k for gc, gp in zip(g_clean, g_poison)]
        sync(device)
        t1 = time.perf_counter()
        delta.grad = objective_pixel_gradient(model, params, normalise, images, yp, r, share / k, args.chunk)
        opt.step()
        with torch.no_grad():
            delta.clamp_(-16 / 255, 16 / 255)
            delta.copy_((x0 + delta).clamp_(0, 1) - x0)
        sync(device)
        times.append((t1 - t0, time.perf_counter() - t1))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out = {"n": len(x), "poisons": k, "width": args.width, "chunk": args.chunk, "device": str(device),
           "threads": torch.get_num_threads(),
           "pass1_s": min(t[0] for t in times), "pass2_s": min(t[1] for t in times),
           "step_s": min(sum(t) for t in times), "peak_rss_gib": peak, "rss_before_step_gib": base_rss}
    if device.type == "cuda":
        out["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["gpu"] = torch.cuda.get_device_name()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--chunks", default="250", help="comma-separated chunk sizes, one process each")
    ap.add_argument("--budgets", help="comma-separated budgets to compare at the first chunk size")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.chunk is not None:  # child: one configuration
        print(json.dumps(one(args)))
        return
    configs = [(args.budget, int(c)) for c in args.chunks.split(",")]
    if args.budgets:
        configs += [(float(b), configs[0][1]) for b in args.budgets.split(",") if float(b) != args.budget]
    rows = []
    for budget, chunk in configs:
        cmd = [sys.executable, __file__, "--npz", args.npz, "--n", str(args.n), "--budget", str(budget),
               "--width", str(args.width), "--steps", str(args.steps), "--device", args.device, "--chunk", str(chunk)]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"p={budget:g} ({r['poisons']} poisons of {r['n']}), ResNet-18 width {r['width']}, chunk {chunk}: "
              f"{r['step_s']:.1f} s/step (pass 1 {r['pass1_s']:.1f} s, pass 2 {r['pass2_s']:.1f} s), "
              f"peak RSS {r['peak_rss_gib']:.2f} GiB (before the step {r['rss_before_step_gib']:.2f} GiB)"
              + (f", peak CUDA {r['peak_cuda_gib']:.2f} GiB" if "peak_cuda_gib" in r else ""), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
