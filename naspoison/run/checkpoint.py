"""In-cell checkpoints: a long loop inside a cell (retraining, a P-DARTS stage, gradient canceling's Adam
steps, ...) saves its full state to the artifact cache every ``N`` seconds of wall time and a rerun of
the cell resumes from it, so a ``kill -9``, a SLURM time limit or a preemption loses at most ``N``
seconds instead of the whole cell. On the CPU a resumed cell gives the bits of an uninterrupted one:
everything the loop's future depends on is restored (model, optimisers, schedulers, the loop's
``torch.Generator``\\ s, the global torch/CUDA/numpy/``random`` states, epoch and curves so far).

How a loop uses it (a few lines, see ``naspoison.train.fit``)::

    ck = checkpoint.loop("fit", modules=[model], optimizers=[opt], schedulers=[sched], generators=[gen])
    state = ck.resume({"epoch": 0, "curves": curves})      # restores everything in place
    for epoch in range(state["epoch"], epochs):
        ...
        ck.save_if_due(lambda: {"epoch": epoch + 1, "curves": curves})

Outside a cell (tests, direct calls) ``loop`` returns a no-op. Inside one, the loops of a cell are told
apart by their order of entry (deterministic: a cell is a deterministic program), so a cell with
several loops (RoBoT's query trainings, a backdoor cell's model then generator) resumes the one it
was in, replaying earlier ones from their saved final state when they have one.

Storage: ``ckpt/<stage>/<cell key>/<loop index>`` in the artifact cache, as ``torch.save`` of a flat
``{name: tensor}`` dict whose structure is a JSON string stored as a uint8 tensor; loading uses
``torch.load(weights_only=True)`` and accepts nothing but that shape, so nothing is ever unpickled
beyond tensors. The interval is ``$NASPOISON_CHECKPOINT_EVERY`` seconds (``bench --checkpoint-every``;
default 600; ``0`` saves every epoch; ``off`` disables) — a machine setting, part of no key.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np

EVERY_ENV = "NASPOISON_CHECKPOINT_EVERY"
DEFAULT_EVERY = 600.0
from naspoison.run.checkpoint_keys import PREFIX  # noqa: E402  (one definition of the key layout)


def interval() -> float | None:
    """Seconds between saves, None when checkpointing is off."""
    raw = os.environ.get(EVERY_ENV, "").strip().lower()
    if raw in ("off", "none", "never"):
        return None
    if not raw:
        return DEFAULT_EVERY
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"${EVERY_ENV}={raw!r}: seconds (a number >= 0) or 'off'") from None
    if not value >= 0:
        raise ValueError(f"${EVERY_ENV}={raw!r}: seconds must be >= 0 (0 saves every epoch) or 'off'")
    return value


# ----------------------------------------------------------------------------- encoding (no pickle)
def _encode(obj, tensors: dict[str, torch.Tensor]):
    """JSON skeleton of ``obj`` with every tensor moved into ``tensors`` (CPU copies)."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().to("cpu", copy=True)
        return {"t": name}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in obj):
            raise TypeError(f"checkpoint dict keys must be str or int, got {[type(k).__name__ for k in obj]}")
        return {"d": [[k, _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, list):
        return {"l": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, tuple):
        return {"u": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, np.ndarray):
        return {"n": _encode(torch.from_numpy(np.ascontiguousarray(obj)), tensors)}
    if isinstance(obj, np.generic):
        return {"v": obj.item()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"v": obj}
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} (only tensors, arrays, dicts, lists and scalars)")


def _decode(node, tensors: dict[str, torch.Tensor]):
    (kind, value), = node.items()
    if kind == "t":
        return tensors[value]
    if kind == "d":
        return {k: _decode(v, tensors) for k, v in value}
    if kind == "l":
        return [_decode(v, tensors) for v in value]
    if kind == "u":
        return tuple(_decode(v, tensors) for v in value)
    if kind == "n":
        return _decode(value, tensors).numpy()
    if kind == "v":
        return value
    raise ValueError(f"unknown checkpoint node {kind!r}")


def dumps(obj) -> bytes:
    tensors: dict[str, torch.Tensor] = {}
    skeleton = json.dumps(_encode(obj, tensors))  # Python floats round-trip exactly through repr
    tensors["__skeleton__"] = torch.frombuffer(bytearray(skeleton.encode("utf-8")), dtype=torch.uint8)
    buf = io.BytesIO()
    torch.save(tensors, buf)
    return buf.getvalue()


def loads(blob: bytes):
    flat = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)  # tensors only, never pickle
    if not isinstance(flat, dict) or not all(isinstance(v, torch.Tensor) for v in flat.values()) \
            or "__skeleton__" not in flat:
        raise ValueError("not a naspoison checkpoint")
    skeleton = json.loads(bytes(flat.pop("__skeleton__").numpy()).decode("utf-8"))
    return _decode(skeleton, flat)


# ----------------------------------------------------------------------------- RNG states
def rng_state() -> dict:
    np_state = np.random.get_state()
    py = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_initialized() else [],
            "numpy": [np_state[0], np_state[1].astype(np.int64), int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "random": [py[0], list(py[1]), py[2]]}


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"]:
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    r = s["random"]
    random.setstate((r[0], tuple(r[1]), r[2]))


# ----------------------------------------------------------------------------- the cell and its loops
@dataclass
class Cell:
    """The cell being computed in this process: where its loops save, and what happened (provenance)."""

    artifacts: object            # an ArtifactCache
    stage: str
    key: str
    every: float
    started: float = field(default_factory=time.monotonic)
    last_save: float = field(default_factory=time.monotonic)
    entered: int = 0             # loops entered so far (their order names them)
    saved: set = field(default_factory=set)
    log: dict = field(default_factory=lambda: {"saves": 0, "resumed": []})
    snapshot: tuple | None = None  # (loop key, bytes) of the last epoch boundary, saved on a signal
    snapshots: bool = False
    snapshot_at: float = -math.inf  # when the last snapshot was taken, and what it cost
    snapshot_cost: float = 0.0

    def prefix(self) -> str:
        return f"{PREFIX}{self.stage}/{self.key}/"

    def put(self, key: str, blob: bytes) -> None:
        self.artifacts.put(key, blob)
        self.saved.add(key)
        self.log["saves"] += 1
        self.last_save = time.monotonic()

    def discard(self) -> None:
        """The cell is stored: its checkpoints are garbage."""
        for k in list(self.saved) + [k for k in keys(self.artifacts) if k.startswith(self.prefix())]:
            delete(self.artifacts, k)
        self.saved.clear()


_current: ContextVar[Cell | None] = ContextVar("naspoison_checkpoint_cell", default=None)
_bound: dict = {"artifacts": None}
_signal_snapshots = {"on": False}


def bind(artifacts) -> None:
    """The artifact cache cells computed in this process checkpoint into (set by the executor)."""
    _bound["artifacts"] = artifacts


def keep_snapshots(on: bool = True) -> None:
    """Keep each loop's last epoch-boundary state in memory so a signal handler can save it (SLURM tasks)."""
    _signal_snapshots["on"] = on


@contextlib.contextmanager
def cell(spec: dict, key: str) -> Iterator[Cell | None]:
    """Checkpointing for the cell ``spec`` (content key ``key``) while it is computed here; None when off."""
    every, artifacts = interval(), _bound["artifacts"]
    if every is None or artifacts is None:
        yield None
        return
    c = Cell(artifacts, spec["stage"], key, every, snapshots=_signal_snapshots["on"])
    token = _current.set(c)
    try:
        yield c
    finally:
        _current.reset(token)


def current() -> Cell | None:
    return _current.get()


def save_snapshot_now() -> bool:
    """From a signal handler: write the current cell's last epoch-boundary state. True if something was saved."""
    c = _current.get()
    if c is None or c.snapshot is None:
        return False
    key, blob = c.snapshot
    c.put(key, blob)
    return True


class Loop:
    """One checkpointed loop of the current cell (see the module docstring)."""

    def __init__(self, cell: Cell | None, name: str, modules=(), optimizers=(), schedulers=(), generators=()):
        self.cell, self.name = cell, name
        self.modules, self.optimizers, self.schedulers = list(modules), list(optimizers), list(schedulers)
        self.generators = list(generators)
        self.key = None
        if cell is not None:
            self.key = f"{cell.prefix()}{cell.entered}"
            cell.entered += 1

    def _payload(self, state: dict) -> dict:
        return {"name": self.name, "state": state, "rng": rng_state(), "history": self.cell.log["resumed"],
                "generators": [g.get_state() for g in self.generators],
                "modules": [m.state_dict() for m in self.modules],
                "optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def resume(self, default: dict) -> dict:
        """The saved loop state (everything else restored in place), or ``default`` when there is none."""
        if self.cell is None:
            return default
        blob = self.cell.artifacts.get(self.key)
        if blob is None:
            return default
        p = loads(blob)
        if p["name"] != self.name or len(p["modules"]) != len(self.modules) \
                or len(p["optimizers"]) != len(self.optimizers) or len(p["generators"]) != len(self.generators):
            raise RuntimeError(f"checkpoint {self.key} is of loop {p['name']!r}, not {self.name!r}: the cell's "
                               "code changed without a version bump? (remove it with `naspoison gc --checkpoints`)")
        for m, s in zip(self.modules, p["modules"], strict=True):
            m.load_state_dict(s)
        for o, s in zip(self.optimizers, p["optimizers"], strict=True):
            o.load_state_dict(s)
        for sc, s in zip(self.schedulers, p["schedulers"], strict=True):
            sc.load_state_dict(s)
        for g, s in zip(self.generators, p["generators"], strict=True):
            g.set_state(s)
        set_rng_state(p["rng"])
        log = self.cell.log["resumed"]
        log += [h for h in p.get("history", []) if h not in log]  # resumes of earlier runs (requeues), in order
        log.append({"loop": int(self.key.rsplit("/", 1)[1]), "name": self.name, "epoch": p["state"].get("epoch")})
        return p["state"]

    def save_if_due(self, state: Callable[[], dict], final: bool = False) -> bool:
        """At an epoch boundary: save ``state()`` (with everything else) when the interval has passed.
        ``final`` (the loop's last epoch): save only if the cell has run longer than the interval, so a
        resumed cell can replay this loop instantly instead of recomputing it."""
        c = self.cell
        if c is None:
            return False
        now = time.monotonic()
        due = (now - c.started >= c.every) if final else (now - c.last_save >= c.every)
        # a snapshot costs a serialisation: at most ~10 % of the time (large states, e.g. GC's poisons, skip some)
        snap = c.snapshots and now - c.snapshot_at >= 10 * c.snapshot_cost
        if due or snap:
            blob = dumps(self._payload(state()))
            if due:
                c.put(self.key, blob)
                c.snapshot = None
                return True
            # a consistent copy of this epoch boundary, written only if a signal comes before the next one
            c.snapshot = (self.key, blob)
            c.snapshot_at, c.snapshot_cost = time.monotonic(), time.monotonic() - now
        return False


def loop(name: str, modules=(), optimizers=(), schedulers=(), generators=()) -> Loop:
    return Loop(_current.get(), name, modules, optimizers, schedulers, generators)


# housekeeping (keys, delete, orphans) lives in a torch-free module so that `gc` starts without torch
from naspoison.run.checkpoint_keys import delete, keys, orphans  # noqa: E402,F401
from naspoison._lazy import lazy

torch = lazy("torch", globals())
