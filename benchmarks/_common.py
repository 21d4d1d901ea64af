"""What the speed benchmarks share: a clock that counts a device's queued work, and the frame of the
"product loop against the plain loop" comparisons (retrain_epoch.py, pdarts_epoch.py): their common
flags and the JSON record they write. Torch is imported lazily: gpu_check.py's parent process has none."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def sync(device) -> None:
    """Wait for a CUDA device's queued kernels (a no-op elsewhere), so that a clock read next counts them."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    """Seconds of ``fn()``, the device work it queued included."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def comparison_parser() -> argparse.ArgumentParser:
    """The data, output and device flags of a comparison; a script adds its sizes, then :func:`add_repeats`."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    return ap


def add_repeats(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain loop")
    ap.add_argument("--repeats", type=int, default=2)


def write_comparison(args, device, rows: list[dict], **measured) -> None:
    """The record (arguments, machine, ``measured``, one row a repeat, the median plain/lean ratio), then the
    ratio printed."""
    import numpy as np
    import torch

    out = {"args": vars(args), "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           **measured, "rows": rows, "median_ratio": float(np.median([r["ratio"] for r in rows]))}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"median ratio (plain time / lean time): {out['median_ratio']:.2f}x")
