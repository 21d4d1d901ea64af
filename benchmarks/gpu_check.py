"""One command that proves the device path of naspoison (issue 22): every stage on the device, the lean
retraining loop's speed against a plain reference loop, and the numerics (κ, Evas score, bf16 vs fp32).

  python benchmarks/gpu_check.py --device cuda          # one GPU, <= 8 min; profile gpu of suites/gpu_check.yaml
  python benchmarks/gpu_check.py --device cpu           # tiny sizes, < 2 min; the CI test (tests/test_gpu_check.py)

Sections, each in its own process with its own time cap (a hung or slow section is killed, the rest still run);
the JSON (``--out``, default benchmarks/results/gpu_check_<device>.json) is rewritten after every section and
every measurement inside one, so a timeout still leaves partial results:

  bench     ``naspoison bench`` in-process on a copy of suites/gpu_check.yaml (dataset path made absolute) with
            two workers on the one device (``--devices cuda:0,cuda:0``): each attack, each algorithm, train, Evas
            search / score / backdoor / scenario, each backdoor defense, sanitize, metrics; then ``--check`` and
            ``report`` on that store. Every stage must have stored cells, each computed on the device asked for;
            a failed cell is named with its stage (and flagged when its error is about device placement).
  speed     images/s of ``fit`` (fp32, bf16) against the plain DataLoader loop of retrain_epoch.py (fp32, host
            transforms) on the DARTS eval network (P-DARTS genotype; 36 ch x 20 cells, batch 128 on a GPU); one P-DARTS
            search epoch against pdarts_epoch.py's plain loop; TE-NAS's κ per candidate op against ntk_kappa.py's
            naive loop. Ratios from one run.
  numerics  κ of TE-NAS's NTK proxy and the Evas trigger-NTK score on the device in fp32 against CPU float64, same
            weights and batch: relative difference <= 1e-4 (with TF32 on and off on CUDA, as a diagnosis).
  parity    a short retrain in bf16 and in fp32 (default 20 epochs, 16 ch x 8 cells, 10,000 training images of
            the full CIFAR-10 from ``--full-cifar``, decoded with shared/tools/decode_cifar10.py when missing; 3 seeds each, runs in
            parallel on the GPU): mean accuracies within seed noise. Skipped, with the reason, without the data.
  compile   the speed section's retrain with the step ``torch.compile``d (``naspoison bench --compile``), bf16 and
            fp32, the graphs compiled counted after every epoch (last: its compile time is the least predictable).

Exit status 0 only when every section ran and passed; the summary lists every failure.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # the sibling benchmarks (loaded by path in the tests, so not on sys.path there)
from _common import sync, timed

SUITE = HERE / "suites" / "gpu_check.yaml"
SECTIONS = ("bench", "speed", "numerics", "parity", "compile")
KAPPA_RTOL = 1e-4  # the bar for device fp32 vs CPU float64

# Per device: sizes, time caps (s) and the whole budget. The GPU numbers fit 8 minutes on one GPU; the CPU ones
# are the CI test's (tiny: they check that every line runs, not the speed of a CPU).
DEFAULTS = {
    "cuda": {"profile": "gpu", "budget": 480, "caps": {"bench": 150, "speed": 70, "numerics": 30, "parity": 150, "compile": 80},
             "resize": None, "train_size": None, "test_size": None, "channels": 36, "layers": 20, "batch": 128, "epochs": 3,
             "loader_workers": 4, "compile_backend": "inductor",
             "pdarts": {"cells": 5, "channels": 16, "batch": 96, "search_size": 5000},
             "ntk": {"batch": 14, "candidates": 16}, "evas": {"batch": 96, "channels": 16, "cells": 5, "gen": 32,
                                                                "inits": 3, "archs": 2},
             # 6 runs x 20 epochs x 79 steps: eager steps of this network are launch-bound (~1,600 kernels), so the
             # full 50,000 images (391 steps an epoch) would need ~5x the section's cap; --parity-train-size 0: all
             "parity": {"epochs": 20, "channels": 16, "layers": 8, "seeds": 3, "train_size": 10000, "judge": True}},
    "cpu": {"profile": "cpu_tiny", "budget": 170, "caps": {"bench": 90, "speed": 30, "numerics": 20, "parity": 30, "compile": 30},
            "resize": [8, 8, 3], "train_size": 128, "test_size": 64, "channels": 4, "layers": 3, "batch": 64, "epochs": 2,
            "loader_workers": 0, "compile_backend": "eager",
            "pdarts": {"cells": 3, "channels": 4, "batch": 32, "search_size": 128},
            "ntk": {"batch": 6, "candidates": 3}, "evas": {"batch": 6, "channels": 4, "cells": 1, "gen": 4,
                                                           "inits": 2, "archs": 2},
            "parity": {"epochs": 2, "channels": 4, "layers": 3, "seeds": 1, "train_size": 256, "judge": False}},
}


def first_existing(*candidates: Path) -> Path | None:
    return next((p for p in candidates if p.exists()), None)


def default_shared() -> Path:
    """shared/ inside the checkout (what the device machine gets), else the checkout's sibling, else /work/shared."""
    return first_existing(REPO / "shared", REPO.parent / "shared", Path("/work/shared")) or REPO.parent / "shared"


# ============================================================================ helpers used by the sections
class Part:
    """A section's results, written to its file after every measurement (a killed section keeps what it had)."""

    def __init__(self, path: Path):
        self.path, self.data = path, {"results": {}, "failures": [], "notes": []}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)

    def put(self, name: str, value) -> None:
        self.data["results"][name] = value
        self.save()

    def fail(self, what: str) -> None:
        print(f"  FAILED {what}", flush=True)
        self.data["failures"].append(what)
        self.save()

    def warn(self, what: str) -> None:
        """A finding that does not fail the check (listed in the summary)."""
        print(f"  WARNING {what}", flush=True)
        self.data.setdefault("warnings", []).append(what)
        self.save()

    def note(self, what: str) -> None:
        print(f"  note: {what}", flush=True)
        self.data["notes"].append(what)
        self.save()

    @contextlib.contextmanager
    def guard(self, name: str):
        """Record an exception as a failure named ``name`` and go on with the section's next measurement."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - every measurement is independent; report, continue
            import traceback

            self.fail(f"{name}: {type(e).__name__}: {str(e)[:400]}")
            traceback.print_exc()


def rel_diff(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else (0.0 if a == b else math.inf)


def load_images(ctx: dict, path: str | None = None, train_size=None, test_size=None):
    """The CIFAR-10 subset (or ``path``), brought to the device's sizes (CPU: 8x8 images, as the bench profile)."""
    from naspoison.data.datasets import load_dataset

    spec = {"name": "npz", "path": path or ctx["npz"]}
    if ctx["defaults"].get("resize"):
        spec["resize"] = ctx["defaults"]["resize"]
    if train_size:
        spec["train_size"] = train_size
    if test_size:
        spec["test_size"] = test_size
    return load_dataset(spec)


def with_precision(recipe, precision: str):
    """(recipe, context) that trains in ``precision`` ("fp32" or "bf16") with ``naspoison.train.fit``: the recipe's
    ``precision`` field (part of its key) is set; the context is kept for the callers and does nothing."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision {precision!r}: expected fp32 or bf16")
    return recipe.model_copy(update={"precision": precision}), contextlib.nullcontext()


def compile_env(backend: str | None):
    """What ``naspoison bench --compile BACKEND`` sets for a run: ``fit`` compiles its step model with it."""
    from naspoison.run import machine

    return machine.using(compile=backend)


@contextlib.contextmanager
def tf32(enabled: bool):
    import torch

    was = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = was


# ============================================================================ section: bench
DEVICE_ERROR = re.compile(r"device|cuda|Expected all tensors|same device|cpu and|channels_last|memory_format", re.I)


def section_bench(ctx: dict, part: Part) -> None:
    import yaml

    from naspoison.cli import main as cli

    work = Path(ctx["workdir"]) / "bench"
    work.mkdir(parents=True, exist_ok=True)
    suite = yaml.safe_load(SUITE.read_text())
    for prof in suite["profiles"].values():  # an absolute path: the copy lives elsewhere than the original
        prof["dataset"]["path"] = str(Path(ctx["npz"]).resolve())
    suite_path = work / "suite.yaml"
    suite_path.write_text(yaml.safe_dump(suite, sort_keys=False))
    store, reports, artifacts = work / "store", work / "reports", work / "artifacts"
    devices = ",".join([ctx["device_name"]] * 2)
    common = [str(suite_path), "--profile", ctx["profile"], "--store", str(store)]
    log = work / "bench.log"

    def run(name: str, argv: list[str]) -> int:
        t0 = time.perf_counter()
        with log.open("a", buffering=1) as f:  # line-buffered: a killed section still leaves its log
            f.write(f"$ naspoison {' '.join(argv)}\n")
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                try:
                    rc = cli(argv)
                except SystemExit as e:  # argparse
                    rc = e.code if isinstance(e.code, int) else 2
        print(f"  naspoison {name}: exit {rc} in {time.perf_counter() - t0:.1f} s", flush=True)
        part.put(f"{name}_exit", rc)
        return rc

    print(f"  bench: profile {ctx['profile']} on {devices}; log {log}", flush=True)
    t0 = time.perf_counter()
    rc = run("bench", ["bench", *common, "--devices", devices, "--reports", str(reports),
                       "--artifacts", str(artifacts)])
    part.put("bench_seconds", round(time.perf_counter() - t0, 1))
    if rc != 0:
        part.fail(f"bench exited {rc} (log {log})")
    inspect_store(ctx, part)
    if run("check", ["bench", *common, "--check", "--reports", str(reports)]) != 0:
        part.fail(f"bench --check failed on the store it just filled (log {log})")
    if run("report", ["report", *common, "--out", str(work / "report_out")]) != 0:
        part.fail(f"report failed (log {log})")
    elif not (work / "report_out" / "report.json").exists():
        part.fail("report wrote no report.json")


def inspect_store(ctx: dict, part: Part) -> None:
    """What the bench slice stored (also after a timeout: the main process calls this then)."""
    from naspoison.stages import VERSIONS
    from naspoison.store import ResultStore

    store = Path(ctx["workdir"]) / "bench" / "store"
    if not store.exists():
        part.fail("bench: no store was written")
        return
    # every failed cell, named with its stage; device-placement errors flagged as such
    rstore = ResultStore(store, read_only=True)
    for f in rstore.failures():
        stage, err = f["spec"]["stage"], f["error"]
        kind = "DEVICE-PLACEMENT ERROR in stage" if DEVICE_ERROR.search(err) else "error in stage"
        part.fail(f"bench: {kind} {stage!r}: {err[:300]}")
    # what ran where: every stage must have cells, each computed on the device asked for
    stages: dict[str, dict] = {}
    for path in rstore.iter_files():
        rec = rstore.load_file(path)
        s = stages.setdefault(rec.stage, {"cells": 0, "devices": set(), "seconds": 0.0})
        s["cells"] += 1
        s["devices"].add(rec.provenance.get("device"))
        s["seconds"] += rec.provenance.get("wall_seconds", 0.0)
    for s in stages.values():
        s["devices"] = sorted(map(str, s["devices"]))
        s["seconds"] = round(s["seconds"], 1)
    part.put("stages", stages)
    for stage in VERSIONS:
        if stage not in stages:
            part.fail(f"bench: stage {stage!r} has no stored cell (not exercised, or every cell of it failed)")
        elif stages[stage]["devices"] != [ctx["device_name"]]:
            part.fail(f"bench: stage {stage!r} computed on {stages[stage]['devices']}, not {ctx['device_name']}")


# ============================================================================ section: speed
class Retrain:
    """The retraining throughput setup shared by the speed and compile sections: one network, data and recipe."""

    def __init__(self, ctx: dict, part: Part):
        import torch

        from naspoison.train import Recipe

        self.dev, self.d, self.part = torch.device(ctx["device_name"]), ctx["defaults"], part
        d = self.d
        self.data = load_images(ctx, train_size=d["train_size"], test_size=d["test_size"])
        self.recipe = Recipe(epochs=d["epochs"], batch_size=d["batch"], init_channels=d["channels"], layers=d["layers"])
        self.n = len(self.data.x_train)

    def setup(self) -> dict:
        import torch

        d = self.d
        return {"network": f"DARTS eval, P-DARTS genotype, {d['channels']} ch x {d['layers']} cells",
                "params": sum(p.numel() for p in self.network().parameters()), "batch": d["batch"],
                "epochs": d["epochs"], "n_train": self.n, "n_test": len(self.data.x_test), "image": list(self.data.shape),
                "loader_workers": d["loader_workers"], "compile_backend": d["compile_backend"],
                "cudnn_benchmark": torch.backends.cudnn.benchmark}

    def network(self):
        from naspoison.spaces.darts import PDARTS_GENOTYPE
        from naspoison.train import build_eval_network, seed_everything

        seed_everything(0)
        return build_eval_network(PDARTS_GENOTYPE, self.data, self.recipe)

    def timed_epochs(self, train_fn, on_epoch=None) -> dict:
        """Wall time per epoch (each ends after its test pass, which syncs); steady = the fastest epoch after the
        first (the first holds the warm-up, and the compile of a compiled step)."""
        marks = []

        def mark(*_):
            marks.append(time.perf_counter())
            if on_epoch:
                on_epoch(len(marks))

        sync(self.dev)
        t0 = time.perf_counter()
        train_fn(mark)
        sync(self.dev)
        total = time.perf_counter() - t0
        epochs = [b - a for a, b in zip([t0, *marks[:-1]], marks)]
        steady = min(epochs[1:]) if len(epochs) > 1 else epochs[0]
        return {"seconds": round(total, 3), "epoch_seconds": [round(e, 3) for e in epochs],
                "img_s_whole": self.n * len(epochs) / total, "img_s_steady": self.n / steady}

    def plain(self) -> dict:
        from retrain_epoch import plain_fit

        return self.timed_epochs(lambda cb: plain_fit(self.network(), self.data, self.recipe, self.dev,
                                                      self.d["loader_workers"], on_epoch=cb))

    def fit(self, precision: str, backend: str | None, on_epoch=None) -> dict:
        from naspoison.train import fit

        r, precision_ctx = with_precision(self.recipe, precision)
        with precision_ctx, compile_env(backend):
            return self.timed_epochs(lambda cb: fit(self.network(), self.data, r, 0, self.dev,
                                                    on_epoch=lambda e, s: cb()), on_epoch)


def _ratios(row: dict, plain: dict | None) -> None:
    if plain:
        row["ratio_steady_vs_plain"] = row["img_s_steady"] / plain["img_s_steady"]
        row["ratio_whole_vs_plain"] = row["img_s_whole"] / plain["img_s_whole"]


def section_speed(ctx: dict, part: Part) -> None:
    rt = Retrain(ctx, part)
    part.put("retrain_setup", rt.setup())
    retrain = {}
    with part.guard("speed.retrain.plain_fp32"):
        retrain["plain_fp32"] = rt.plain()
        part.put("retrain", retrain)
        print(f"  retrain plain fp32 (DataLoader, host transforms): {retrain['plain_fp32']['img_s_steady']:.0f} img/s",
              flush=True)
    for precision in ("fp32", "bf16"):
        name = f"fit_{precision}_eager"
        with part.guard(f"speed.retrain.{name}"):
            retrain[name] = rt.fit(precision, None)
            _ratios(retrain[name], retrain.get("plain_fp32"))
            part.put("retrain", retrain)
            print(f"  retrain {name}: {retrain[name]['img_s_steady']:.0f} img/s steady "
                  f"({retrain[name].get('ratio_steady_vs_plain', float('nan')):.2f}x plain)", flush=True)
    with part.guard("speed.pdarts_epoch"):
        part.put("pdarts_epoch", pdarts_epoch(ctx, rt.dev))
    with part.guard("speed.ntk_kappa"):
        part.put("ntk_kappa", ntk_per_candidate(ctx, rt.dev))


def section_compile(ctx: dict, part: Part) -> None:
    """``fit`` with its step ``torch.compile``d (what ``naspoison bench --compile`` does), bf16 first; ratios against
    the speed section's plain loop. The graphs compiled are counted after every epoch."""
    import torch

    rt = Retrain(ctx, part)
    speed = Path(ctx["workdir"]) / "speed.json"
    plain = json.loads(speed.read_text())["results"].get("retrain", {}).get("plain_fp32") if speed.exists() else None
    backend = ctx["defaults"]["compile_backend"]
    part.put("setup", {"backend": backend, "epochs": rt.d["epochs"], "plain_fp32_from_speed": plain})
    retrain = {}
    for precision in ("bf16", "fp32"):
        name = f"fit_{precision}_compiled"
        with part.guard(f"compile.{name}"):
            torch._dynamo.reset()
            base = _compiled_graphs()
            progress = retrain.setdefault(name, {"graphs_after_epoch": []})

            def on_epoch(k, progress=progress):
                progress["graphs_after_epoch"].append(_compiled_graphs() - base)
                part.put("retrain", retrain)

            progress.update(rt.fit(precision, backend, on_epoch))
            _ratios(progress, plain)
            n_graphs = progress["graphs_after_epoch"][-1]
            part.put("retrain", retrain)
            print(f"  retrain {name}: {progress['img_s_steady']:.0f} img/s steady "
                  f"({progress.get('ratio_steady_vs_plain', float('nan')):.2f}x plain), {n_graphs} graphs compiled",
                  flush=True)
            # one graph, or two when drop-path is off in the first epoch (probability 0); more means recompiles
            if n_graphs > 2:
                part.warn(f"compile.{name}: {n_graphs} graphs compiled in {rt.d['epochs']} epochs: torch.compile "
                          "recompiles the step (a changed Python float such as drop_path_prob every epoch? past "
                          "torch._dynamo's recompile limit of 8 it runs eager)")
        if name not in retrain or "seconds" not in retrain[name]:
            break  # the compiler itself failed: the other precision would only repeat it


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def pdarts_epoch(ctx: dict, dev) -> dict:
    """One P-DARTS search epoch after warm-up, lean against plain (pdarts_epoch.py's loops, same supernet)."""
    import numpy as np
    import torch
    from pdarts_epoch import plain_epoch

    from naspoison.nas.pdarts import PDARTSParams, _split, _train_stage
    from naspoison.spaces.darts import EDGES, OP_NAMES
    from naspoison.spaces.darts_supernet import SuperNetwork
    from naspoison.train import seed_everything

    d = ctx["defaults"]["pdarts"]
    data = load_images(ctx)
    p = PDARTSParams(cells=[d["cells"]], ops_kept=[1], skip_dropout=[0.0], epochs=2, warmup_epochs=1,
                     batch_size=d["batch"], init_channels=d["channels"], search_size=min(d["search_size"], len(data.y_train)))
    w_half, a_half, _ = _split(data, p, 0, dev)
    host = lambda h: (h.x.permute(0, 2, 3, 1).cpu().numpy(), h.y.cpu().numpy())  # noqa: E731
    stats_from = np.concatenate([host(w_half)[0], host(a_half)[0]])
    one_epoch = p.model_copy(update={"epochs": 1, "warmup_epochs": 0})

    def supernet():
        seed_everything(0)
        net = SuperNetwork([list(OP_NAMES) for _ in EDGES], [list(OP_NAMES) for _ in EDGES], p.init_channels,
                           d["cells"], data.num_classes, in_channels=data.shape[2]).to(dev)
        return net.to(memory_format=torch.channels_last) if dev.type == "cuda" else net

    gen = torch.Generator(device=dev).manual_seed(0)
    lean = timed(lambda: _train_stage(supernet(), w_half, a_half, one_epoch, 0.0, gen, lambda m: None), dev)
    plain = timed(lambda: plain_epoch(supernet(), host(w_half), host(a_half), stats_from, p, dev,
                                      ctx["defaults"]["loader_workers"]), dev)
    out = {"cells": d["cells"], "channels": d["channels"], "batch": d["batch"], "search_size": p.search_size,
           "lean_s": lean, "plain_s": plain, "ratio": plain / lean}
    print(f"  P-DARTS search epoch: lean {lean:.2f} s, plain {plain:.2f} s ({plain / lean:.2f}x)", flush=True)
    return out


def ntk_per_candidate(ctx: dict, dev) -> dict:
    """TE-NAS's κ per candidate op in round 1 (the parent's κ shared by the 196 candidates) against the naive
    loop of ntk_kappa.py (parent and child, every time)."""
    import numpy as np
    import torch
    from ntk_kappa import naive_kappa

    from naspoison.nas.metrics import kappa, ntk_gram, thin_network_kernels
    from naspoison.nas.tenas import KINDS, OPS, Probe, TENASParams
    from naspoison.spaces.darts import EDGES

    d = ctx["defaults"]["ntk"]
    data = load_images(ctx)
    torch.manual_seed(0)
    probe = Probe(data, TENASParams(batch_size=d["batch"]), np.random.default_rng(0), dev)
    probe.new_repeat()
    net, x = probe.ntk_net, probe.ntk_x
    full = {k: np.ones((len(EDGES), len(OPS)), dtype=bool) for k in KINDS}
    cands = [(k, e, o) for k in KINDS for e in range(len(EDGES)) for o in range(len(OPS))][:d["candidates"]]

    def fast() -> float:
        with thin_network_kernels(dev):
            return kappa(ntk_gram(net, x))

    def set_mask(c=None):
        m = {k: v.copy() for k, v in full.items()}
        if c is not None:
            m[c[0]][c[1], c[2]] = False
        net.set_alive(m["normal"], m["reduce"])

    set_mask()
    fast(), naive_kappa(net, x)  # warm-up
    parent = timed(fast, dev)
    children = timed(lambda: [set_mask(c) or fast() for c in cands], dev) / len(cands)
    naive = timed(lambda: [(set_mask(), naive_kappa(net, x), set_mask(c), naive_kappa(net, x)) for c in cands],
                  dev) / len(cands)
    product = children + parent / (2 * len(EDGES) * len(OPS))
    out = {"batch": len(x), "candidates": len(cands), "parent_s": parent, "product_per_candidate_s": product,
           "naive_per_candidate_s": naive, "ratio": naive / product}
    print(f"  TE-NAS κ per candidate op: product {product * 1e3:.1f} ms, naive {naive * 1e3:.1f} ms "
          f"({naive / product:.2f}x)", flush=True)
    return out


# ============================================================================ section: numerics
def section_numerics(ctx: dict, part: Part) -> None:
    import torch

    dev = torch.device(ctx["device_name"])
    modes = [("default", contextlib.nullcontext)]
    if dev.type == "cuda":  # convolutions run in TF32 by default on CUDA: measure both, judge the default
        modes = [("tf32_default", lambda: tf32(True)), ("tf32_off", lambda: tf32(False))]
    with part.guard("numerics.kappa"):
        part.put("kappa", kappa_numerics(ctx, dev, modes, part))
    with part.guard("numerics.evas_score"):
        part.put("evas_score", evas_numerics(ctx, dev, modes, part))


def kappa_numerics(ctx: dict, dev, modes, part: Part) -> dict:
    """κ of TE-NAS's NTK proxy (all ops alive) on one batch: device fp32 vs a float64 CPU copy of the same net."""
    import numpy as np
    import torch

    from naspoison.nas.metrics import kappa, ntk_gram, thin_network_kernels
    from naspoison.nas.tenas import Probe, TENASParams

    data = load_images(ctx)
    params = TENASParams(batch_size=ctx["defaults"]["ntk"]["batch"])
    probes = []
    for device in (dev, torch.device("cpu")):  # the same seeds: weights are drawn on the host, then moved
        torch.manual_seed(0)
        probes.append(Probe(data, params, np.random.default_rng(0), device))
        probes[-1].new_repeat()
    probe, ref_probe = probes
    for (name, a), b in zip(probe.ntk_net.state_dict().items(), ref_probe.ntk_net.state_dict().values()):
        if not torch.equal(a.cpu(), b):
            raise AssertionError(f"the device and CPU proxies differ at {name}: not the same network")
    ref = kappa(ntk_gram(ref_probe.ntk_net.double(), ref_probe.ntk_x.double()))
    out = {"batch": len(probe.ntk_x), "kappa_cpu_float64": ref}
    for name, mode in modes:
        with mode(), thin_network_kernels(dev):
            k = kappa(ntk_gram(probe.ntk_net, probe.ntk_x))
        out[name] = {"kappa_fp32": k, "rel_diff": rel_diff(k, ref)}
    judged = out[modes[0][0]]
    out["ok"] = judged["rel_diff"] <= KAPPA_RTOL
    print(f"  κ (TE-NAS proxy, batch {len(probe.ntk_x)}): float64 CPU {ref:.6g}; "
          + "; ".join(f"{name} {dev.type} fp32 {out[name]['kappa_fp32']:.6g} (rel {out[name]['rel_diff']:.1e})"
                      for name, _ in modes), flush=True)
    if not out["ok"]:
        part.fail(f"numerics.kappa: {dev.type} fp32 vs CPU float64 relative difference {judged['rel_diff']:.2e} "
                  f"> {KAPPA_RTOL:g}" + (f" (TF32 off: {out['tf32_off']['rel_diff']:.2e})" if "tf32_off" in out else ""))
    return out


def evas_numerics(ctx: dict, dev, modes, part: Part) -> dict:
    """The Evas score (median κ of the trigger NTK over inits) through the product's Scorer on the device (fp32)
    against the same models, generators and batch in float64 on the CPU."""
    import numpy as np

    from naspoison.backdoor import TriggerGenerator
    from naspoison.backdoor.score import trigger_ntk_cond
    from naspoison.nas.evas import EvasParams, Scorer
    from naspoison.spaces import nb201
    from naspoison.train import seed_everything

    e = ctx["defaults"]["evas"]
    data = load_images(ctx)
    setting = EvasParams(batch_size=e["batch"], inits=e["inits"], channels=e["channels"], cells_per_stage=e["cells"],
                         generator_channels=e["gen"])
    scorer = Scorer(data, setting, seed=0, device=str(dev))
    rng = np.random.default_rng(0)
    archs = [nb201.from_index(int(i)) for i in rng.integers(0, nb201.N_ARCHS, e["archs"])]
    x64 = scorer.x01.cpu().double()
    mean64, std64 = scorer.mean.cpu().double(), scorer.std.cpu().double()
    rows, worst = [], 0.0
    for ops in archs:
        ref = []
        for init_seed in scorer.init_seeds:  # Scorer.compute's construction order, in float64 on the CPU
            seed_everything(init_seed)
            model = nb201.Network(ops, data.num_classes, setting.channels, setting.cells_per_stage, data.shape[2]).double()
            gen = TriggerGenerator(data.shape[2], setting.variant, setting.generator_channels,
                                   scorer.mean.flatten().cpu(), scorer.std.flatten().cpu()).double()
            ref.append(trigger_ntk_cond(model, gen, x64, lambda x: (x - mean64) / std64, setting.chunk))
        row = {"arch": nb201.to_string(ops), "kappas_cpu_float64": ref, "score_cpu_float64": statistics.median(ref)}
        for name, mode in modes:
            with mode():
                got = scorer.compute(ops)
            diffs = [rel_diff(a, b) for a, b in zip(got["kappas"], ref)]
            row[name] = {"kappas_fp32": got["kappas"], "score_fp32": got["score"], "max_rel_diff": max(diffs)}
        worst = max(worst, row[modes[0][0]]["max_rel_diff"])
        rows.append(row)
        print(f"  Evas score {row['arch']}: float64 CPU {row['score_cpu_float64']:.6g}; "
              + "; ".join(f"{name} {dev.type} fp32 {row[name]['score_fp32']:.6g} (max rel {row[name]['max_rel_diff']:.1e})"
                          for name, _ in modes), flush=True)
    out = {"setting": setting.model_dump(), "archs": rows, "max_rel_diff": worst, "ok": worst <= KAPPA_RTOL}
    if not out["ok"]:
        part.fail(f"numerics.evas_score: {dev.type} fp32 vs CPU float64 relative difference {worst:.2e} > {KAPPA_RTOL:g}")
    return out


# ============================================================================ section: parity
def parity_run(job: dict) -> dict:
    """One retrain (a process of its own on the GPU); its progress file is rewritten after every epoch."""
    import torch

    from naspoison.spaces.darts import PDARTS_GENOTYPE
    from naspoison.train import Recipe, seeded_eval_network, fit

    torch.set_num_threads(job["threads"])
    data = load_images(job["ctx"], job["data"], job["train_size"])
    recipe = Recipe(epochs=job["epochs"], batch_size=128, init_channels=job["channels"], layers=job["layers"])
    recipe, precision_ctx = with_precision(recipe, job["precision"])
    progress = Path(job["progress"])
    rec = {"precision": job["precision"], "seed": job["seed"], "test_acc": [], "train_loss": []}
    t0 = time.perf_counter()

    def on_epoch(epoch, stats):
        rec["test_acc"].append(stats["test_acc"])
        rec["train_loss"].append(stats["train_loss"])
        rec["seconds"] = time.perf_counter() - t0
        progress.write_text(json.dumps(rec))

    with precision_ctx:
        out = fit(seeded_eval_network(PDARTS_GENOTYPE, data, recipe, job["seed"]), data, recipe, job["seed"],
                  job["device"], on_epoch)
    rec["final_test_acc"] = out["test_acc"]
    rec["seconds"] = time.perf_counter() - t0
    progress.write_text(json.dumps(rec))
    return rec


def section_parity(ctx: dict, part: Part) -> None:
    d = ctx["defaults"]["parity"]
    path = Path(ctx["full_cifar"]) if ctx.get("full_cifar") else None
    if ctx["device"] == "cpu":
        path = Path(ctx["npz"])  # the tiny CPU run checks the plumbing on the subset
    elif path is None or not path.exists():
        decoder = ctx.get("decode_pid_file")
        if decoder and Path(decoder).exists():  # started at launch, in the background: wait for it
            pid = int(Path(decoder).read_text())
            print(f"  parity: waiting for the CIFAR-10 decoder (pid {pid}) to write {path}", flush=True)
            while _alive(pid) and not path.exists():  # it writes a temporary file, then renames it
                time.sleep(1)
        if path is None or not path.exists():
            part.data["skipped"] = (f"full CIFAR-10 not found at {path} (decode it with `python "
                                    f"shared/tools/decode_cifar10.py OUT.npz` and pass --full-cifar OUT.npz)")
            part.note(part.data["skipped"])
            return
    jobs = []
    for seed in range(d["seeds"]):
        for precision in ("fp32", "bf16"):
            jobs.append({"ctx": {"npz": ctx["npz"], "defaults": ctx["defaults"]}, "data": str(path), "train_size": d["train_size"],
                         "epochs": d["epochs"], "channels": d["channels"], "layers": d["layers"], "seed": seed,
                         "precision": precision, "device": ctx["device_name"], "threads": 1,
                         "progress": str(Path(ctx["workdir"]) / f"parity_{precision}_{seed}.json")})
    if ctx["device"] == "cuda":  # the host cores shared by the parallel runs
        for j in jobs:
            j["threads"] = max(1, (os.cpu_count() or 1) // len(jobs))
    part.put("setup", {"data": str(path), "train_size": d["train_size"] or "all", "epochs": d["epochs"], "network": f"P-DARTS genotype {d['channels']} ch x "
                       f"{d['layers']} cells", "seeds": d["seeds"], "parallel_processes": len(jobs)
                       if ctx["device"] == "cuda" else 1})
    print(f"  parity: {len(jobs)} runs ({d['seeds']} seed(s) x fp32/bf16), {d['epochs']} epochs, data {path}", flush=True)
    # small networks leave most of a GPU idle: every run at once, a process each (on the CPU as well, two at a
    # time, so the CI test runs the same code)
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(len(jobs) if ctx["device"] == "cuda" else min(2, len(jobs))) as pool:
        results = [pool.apply_async(parity_run, (j,)) for j in jobs]
        for j, r in zip(jobs, results):
            with part.guard(f"parity.{j['precision']}.seed{j['seed']}"):
                r.get()
    collect_parity(ctx, part)


def collect_parity(ctx: dict, part: Part) -> None:
    """Judge from the runs' progress files (also after a timeout: the main process calls this then)."""
    d = ctx["defaults"]["parity"]
    runs = {}
    for f in sorted(Path(ctx["workdir"]).glob("parity_*.json")):
        r = json.loads(f.read_text())
        runs[f"{r['precision']}_seed{r['seed']}"] = r
    done = {p: [r["final_test_acc"] * 100 for r in runs.values() if r["precision"] == p and "final_test_acc" in r]
            for p in ("fp32", "bf16")}
    out = {"runs": runs, "final_acc_pct": done}
    if done["fp32"] and done["bf16"]:
        m32, m16 = statistics.mean(done["fp32"]), statistics.mean(done["bf16"])
        n32, n16 = len(done["fp32"]), len(done["bf16"])
        if n32 > 1 and n16 > 1:  # within seed noise: |Δ| no larger than twice its standard error
            se = math.sqrt(statistics.variance(done["fp32"]) / n32 + statistics.variance(done["bf16"]) / n16)
            bound, basis = max(2 * se, ctx["parity_floor"]), f"2 x standard error of the difference ({n32}+{n16} seeds)"
        else:
            bound, basis = ctx["parity_floor"], "fixed floor: one seed each, no seed-noise estimate"
        out.update({"mean_fp32": m32, "mean_bf16": m16, "diff_pp": m16 - m32, "bound_pp": bound, "basis": basis,
                    "ok": abs(m16 - m32) <= bound, "judged": d["judge"]})
        print(f"  parity: fp32 {m32:.2f} % (n={n32}), bf16 {m16:.2f} % (n={n16}), diff {m16 - m32:+.2f} pp, "
              f"bound {bound:.2f} pp ({basis}){'' if d['judge'] else ' [not judged at CPU sizes]'}", flush=True)
        if d["judge"] and not out["ok"]:
            part.fail(f"parity: bf16 vs fp32 mean accuracy differs by {m16 - m32:+.2f} pp > {bound:.2f} pp")
        if d["judge"] and min(n32, n16) < d["seeds"]:
            part.note(f"parity: only {min(n32, n16)} of {d['seeds']} seeds finished in time")
    elif runs:
        part.fail("parity: no fp32/bf16 pair finished (partial curves in results.parity.runs)")
    unfinished = [r for r in runs.values() if "final_test_acc" not in r and r["test_acc"]]
    if unfinished and {r["precision"] for r in runs.values()} == {"fp32", "bf16"}:
        # not judged, but said: both precisions at the last epoch every run reached
        k = min(len(r["test_acc"]) for r in runs.values())
        if k:
            at = {p: statistics.mean(100 * r["test_acc"][k - 1] for r in runs.values() if r["precision"] == p)
                  for p in ("fp32", "bf16")}
            out["at_common_epoch"] = {"epoch": k, "mean_acc_pct": at}
            part.note(f"parity: after epoch {k} of {d['epochs']} (every run got that far): fp32 {at['fp32']:.2f} %, "
                      f"bf16 {at['bf16']:.2f} %")
    part.put("parity", out)


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie: the decoder is the main process's child, reaped only at its end)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    return state not in ("Z", "X")


# ============================================================================ orchestration
SECTION_FNS = {"bench": section_bench, "speed": section_speed, "numerics": section_numerics, "parity": section_parity,
               "compile": section_compile}


def child(ctx_path: str, name: str) -> int:
    ctx = json.loads(Path(ctx_path).read_text())
    import torch

    torch.set_num_threads(ctx["threads"])
    if ctx["device"] == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available on this machine", file=sys.stderr)
        return 3
    part = Part(Path(ctx["workdir"]) / f"{name}.json")
    part.save()
    SECTION_FNS[name](ctx, part)
    return 1 if part.data["failures"] else 0


def run_section(name: str, ctx: dict, ctx_path: Path, cap: float) -> dict:
    """The section in a process of its own (a new session: its workers die with it), killed at ``cap`` seconds."""
    part_path = Path(ctx["workdir"]) / f"{name}.json"
    part_path.unlink(missing_ok=True)
    print(f"[{name}] (cap {cap:.0f} s)", flush=True)
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    proc = subprocess.Popen([sys.executable, __file__, "--_section", name, "--_ctx", str(ctx_path)],
                            start_new_session=True)
    timed_out = False
    try:
        rc = proc.wait(timeout=cap)
    except subprocess.TimeoutExpired:
        timed_out = True
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        rc = proc.returncode
    out = json.loads(part_path.read_text()) if part_path.exists() else {"results": {}, "failures": [], "notes": []}
    if timed_out and name in ("parity", "bench"):
        part = Part(part_path)
        part.data = out
        try:  # judge whatever finished
            (collect_parity if name == "parity" else inspect_store)(ctx, part)
        except Exception as e:  # noqa: BLE001 - a half-written store must not hide the timeout
            part.fail(f"{name}: reading its partial results failed: {type(e).__name__}: {e}")
        out = part.data
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["cpu_seconds"] = round(_children_cpu() - cpu0, 1)  # user + system of the section's processes (a loaded host)
    out["exit"] = rc
    if timed_out:
        out["failures"].append(f"{name}: timed out after {cap:.0f} s (partial results kept)")
    elif rc != 0 and not out["failures"]:
        out["failures"].append(f"{name}: exited {rc} without a recorded failure (see its output above)")
    out["status"] = "timeout" if timed_out else ("skipped" if out.get("skipped") else
                                                 ("ok" if not out["failures"] else "failed"))
    print(f"[{name}] {out['status']} in {out['seconds']} s (CPU time {out['cpu_seconds']} s)", flush=True)
    return out


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def summary_lines(report: dict) -> list[str]:
    lines = [f"gpu_check on {report['device_label']}: {'PASS' if report['ok'] else 'FAIL'} "
             f"in {report['seconds']:.0f} s (budget {report['budget']} s)"]
    s = report["sections"]
    if "bench" in s:
        b = s["bench"]["results"]
        st = b.get("stages", {})
        per_stage = ", ".join(f"{k} {v['cells']}" for k, v in st.items())
        lines.append(f"  bench    {s['bench']['status']}: {sum(v['cells'] for v in st.values())} cells over "
                     f"{len(st)} stages ({per_stage}) in "
                     f"{b.get('bench_seconds', '?')} s; --check exit {b.get('check_exit')}, report exit {b.get('report_exit')}")
    if "speed" in s:
        r = s["speed"]["results"]
        parts = [f"{k.removeprefix('fit_')} {v.get('ratio_steady_vs_plain', float('nan')):.2f}x"
                 for k, v in r.get("retrain", {}).items() if k != "plain_fp32"]
        plain = r.get("retrain", {}).get("plain_fp32", {}).get("img_s_steady")
        lines.append(f"  speed    {s['speed']['status']}: fit vs plain loop ({plain or float('nan'):.0f} img/s): "
                     + ", ".join(parts))
        if "pdarts_epoch" in r:
            lines.append(f"           P-DARTS epoch {r['pdarts_epoch']['lean_s']:.2f} s vs {r['pdarts_epoch']['plain_s']:.2f} s "
                         f"({r['pdarts_epoch']['ratio']:.2f}x); TE-NAS κ/candidate "
                         + (f"{r['ntk_kappa']['ratio']:.2f}x" if "ntk_kappa" in r else "-"))
    if "numerics" in s:
        r = s["numerics"]["results"]
        k, e = r.get("kappa", {}), r.get("evas_score", {})
        first = next((v for v in k.values() if isinstance(v, dict)), {})
        lines.append(f"  numerics {s['numerics']['status']}: κ rel diff {first.get('rel_diff', float('nan')):.1e}, "
                     f"Evas score max rel diff {e.get('max_rel_diff', float('nan')):.1e} (bar {KAPPA_RTOL:g})")
    if "parity" in s:
        p = s["parity"]["results"].get("parity", {})
        if s["parity"].get("skipped"):
            lines.append(f"  parity   skipped: {s['parity']['skipped']}")
        else:
            lines.append(f"  parity   {s['parity']['status']}: fp32 {p.get('mean_fp32', float('nan')):.2f} %, bf16 "
                         f"{p.get('mean_bf16', float('nan')):.2f} %, diff {p.get('diff_pp', float('nan')):+.2f} pp "
                         f"(bound {p.get('bound_pp', float('nan')):.2f})")
    if "compile" in s:
        r = s["compile"]["results"].get("retrain", {})
        lines.append(f"  compile  {s['compile']['status']}: " + (", ".join(
            f"{k.removeprefix('fit_')} {v.get('ratio_steady_vs_plain', float('nan')):.2f}x plain, "
            f"{(v.get('graphs_after_epoch') or ['?'])[-1]} graphs" for k, v in r.items()) or "-"))
    for name in report["not_run"]:
        lines.append(f"  {name:8s} not run: the budget was spent")
    if report.get("warnings"):
        lines.append(f"WARNINGS ({len(report['warnings'])}):")
        lines += [f"  - {w}" for w in report["warnings"]]
    if report["failures"]:
        lines.append(f"FAILURES ({len(report['failures'])}):")
        lines += [f"  - {f}" for f in report["failures"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    shared = default_shared()
    ap.add_argument("--npz", default=str(shared / "data" / "cifar10_subset.npz"), help="the CIFAR-10 subset (default: %(default)s)")
    ap.add_argument("--full-cifar", help="decoded full CIFAR-10 .npz for the parity retrain (default on CUDA: "
                    "WORKDIR/cifar10_full.npz, decoded in the background from shared/data when missing)")
    ap.add_argument("--decode-tool", default=str(shared / "tools" / "decode_cifar10.py"))
    ap.add_argument("--out", help="JSON (default: benchmarks/results/gpu_check_<device>.json)")
    ap.add_argument("--workdir", help="store, logs, temporary suite (default: a fresh temporary folder)")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--budget", type=float, help="whole-run seconds (default: 480 on CUDA, 170 on CPU)")
    ap.add_argument("--cap-scale", type=float, default=1.0,
                    help="multiply every section's time cap and the budget (a loaded or slow machine)")
    ap.add_argument("--parity-epochs", type=int)
    ap.add_argument("--parity-seeds", type=int)
    ap.add_argument("--parity-train-size", type=int, help="training images of the parity retrain (0: all; "
                    "default 10,000 on CUDA)")
    ap.add_argument("--parity-floor", type=float, default=1.0, help="smallest accepted bf16-fp32 gap, points (default 1)")
    ap.add_argument("--threads", type=int, help="torch threads per section process (default: all cores on CUDA, 1 on CPU)")
    ap.add_argument("--_section", help=argparse.SUPPRESS)
    ap.add_argument("--_ctx", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._section:
        return child(args._ctx, args._section)

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {bad}; known: {', '.join(SECTIONS)}")
    if not Path(args.npz).is_file():
        ap.error(f"--npz {args.npz} does not exist (the CIFAR-10 subset, shared/data/cifar10_subset.npz)")
    defaults = copy.deepcopy(DEFAULTS[args.device])
    if args.parity_epochs:
        defaults["parity"]["epochs"] = args.parity_epochs
    if args.parity_seeds:
        defaults["parity"]["seeds"] = args.parity_seeds
    if args.parity_train_size is not None:
        defaults["parity"]["train_size"] = args.parity_train_size or None
    budget = (args.budget or defaults["budget"]) * args.cap_scale
    defaults["caps"] = {k: v * args.cap_scale for k, v in defaults["caps"].items()}
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix=f"gpu_check_{args.device}_"))
    workdir.mkdir(parents=True, exist_ok=True)
    out_path = Path(args.out or HERE / "results" / f"gpu_check_{args.device}.json")
    full = args.full_cifar or (str(workdir / "cifar10_full.npz") if args.device == "cuda" else None)
    ctx = {"device": args.device, "device_name": "cuda:0" if args.device == "cuda" else "cpu", "npz": str(Path(args.npz).resolve()),
           "full_cifar": full, "workdir": str(workdir), "profile": defaults["profile"], "defaults": defaults,
           "parity_floor": args.parity_floor,
           "threads": args.threads or ((os.cpu_count() or 1) if args.device == "cuda" else 1)}
    import torch

    label, decoder = args.device, None
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("gpu_check: --device cuda but CUDA is not available here (use --device cpu)", file=sys.stderr)
            return 2
        label = f"cuda ({torch.cuda.get_device_name(0)})"
        tool, jpeg = Path(args.decode_tool), Path(args.decode_tool).parent.parent / "data" / "cifar10_jpeg.npz"
        if "parity" in sections and not Path(full).exists() and tool.exists() and jpeg.exists():
            # decoding 60,000 JPEGs takes a while on the host: in the background while the GPU sections run
            dec = subprocess.Popen([sys.executable, str(tool), full, "--data-dir", str(jpeg.parent)],
                                   stdout=subprocess.DEVNULL, start_new_session=True)
            (workdir / "decode.pid").write_text(str(dec.pid))
            decoder = dec
            ctx["decode_pid_file"] = str(workdir / "decode.pid")
    ctx_path = workdir / "ctx.json"
    ctx_path.write_text(json.dumps(ctx, indent=1))
    report = {"device": args.device, "device_label": label, "torch": torch.__version__, "cpu_count": os.cpu_count(),
              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "npz": ctx["npz"], "workdir": str(workdir), "budget": budget, "caps": defaults["caps"],
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "sections": {}, "not_run": [],
              "failures": [], "ok": False, "seconds": 0.0}
    t0 = time.perf_counter()

    def write():
        report["seconds"] = round(time.perf_counter() - t0, 1)
        report["failures"] = [f for s in report["sections"].values() for f in s["failures"]] + \
                             [f"{n}: not run (budget spent)" for n in report["not_run"]]
        report["warnings"] = [w for s in report["sections"].values() for w in s.get("warnings", [])]
        report["ok"] = not report["failures"] and len(report["sections"]) == len(sections)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=1, default=str) + "\n")

    for name in sections:
        left = budget - (time.perf_counter() - t0)
        if left < 5:
            report["not_run"].append(name)
            write()
            continue
        report["sections"][name] = run_section(name, ctx, ctx_path, min(defaults["caps"][name], left))
        write()
    write()
    if decoder is not None and decoder.poll() is None:  # parity was skipped or ran out of time before it finished
        decoder.kill()
    if decoder is not None:
        decoder.wait()
    print("\n".join(summary_lines(report)))
    print(f"wrote {out_path}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
