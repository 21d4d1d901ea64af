"""Running one cell: its thread count, its provenance (SPEC §4: in the record, never in the key) and
``run_stage``, which computes it and stores it with that provenance."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from collections.abc import Callable
from functools import lru_cache

import numpy as np

import naspoison
from naspoison._lazy import lazy
from naspoison.run import checkpoint
from naspoison.store import ResultStore, content_key
from naspoison.store.artifacts import recording
from naspoison.store.timings import split_timings

torch = lazy("torch", globals())


@lru_cache(maxsize=1)
def _static_provenance() -> dict:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(__file__)).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"git_revision": rev, "naspoison": naspoison.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "host": socket.gethostname()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def _hardware() -> dict:
    return {"cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}


def _numerics(device: str) -> dict:
    """What decides the bits besides the code and the key: threads, GPU, determinism flags, precision."""
    gpu = None
    if device.startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {**_hardware(), "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "gpu": gpu, "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic, "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def autocast_of(spec: dict) -> str:
    """The autocast the cell ran under: bf16 only where a ``precision`` field of its parameters asks for it
    (naspoison.train.autocast_for), fp32 otherwise, on every device."""
    def asks_bf16(obj) -> bool:
        if isinstance(obj, dict):
            return obj.get("precision") == "bf16" or any(asks_bf16(v) for v in obj.values())
        return isinstance(obj, list) and any(asks_bf16(v) for v in obj)

    return "bfloat16" if asks_bf16(spec.get("params")) else "float32"


def provenance(device: str, start: float, end: float) -> dict:
    return {**_static_provenance(), **_numerics(device), "device": device, "start": start, "end": end,
            "wall_seconds": round(end - start, 3), "pid": os.getpid()}


THREADS_ENV = "NASPOISON_CELL_THREADS"


def cell_threads() -> int:
    """Intra-op threads every cell runs with, whatever the worker count (``$NASPOISON_CELL_THREADS``, default 1):
    CPU float reductions depend on it, so a result must not depend on how many workers were asked for."""
    raw = os.environ.get(THREADS_ENV, "1")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"${THREADS_ENV}={raw!r}: a positive integer") from None
    if n < 1:
        raise ValueError(f"${THREADS_ENV}={raw!r}: a positive integer")
    return n


def run_stage(store: ResultStore, spec: dict, compute: Callable[[str], dict], device: str) -> dict:
    """Compute a cell on ``device`` (``compute(device)``) and store it with its provenance; returns the stored
    result. The digests of the artifacts the cell made (keys holding its own key) go into its provenance: every
    later load checks them. Long loops inside checkpoint to the artifact cache (naspoison.run.checkpoint); the
    checkpoints go once the cell is stored."""
    before = torch.get_num_threads()
    torch.set_num_threads(cell_threads())
    try:
        start = time.time()
        key = content_key(spec)
        with checkpoint.cell(spec, key) as ck:
            with recording() as written:
                result, timings = split_timings(compute(device))  # wall times are provenance, not results
            prov = provenance(device, start, time.time()) | {"autocast": autocast_of(spec)}
            # checkpoints are the cell's scratch state, removed below: not artifacts later loads check
            made = {k: d for k, d in sorted(written.items()) if key in k and not k.startswith(checkpoint.PREFIX)}
            prov |= ({"artifacts": made} if made else {}) | ({"timings": timings} if timings else {})
            if ck is not None:
                prov["checkpoint"] = {"every_seconds": ck.every, **ck.log}
            rec = store.put(spec, result, prov)
            if ck is not None:
                ck.discard()
        return rec.result
    finally:
        torch.set_num_threads(before)
