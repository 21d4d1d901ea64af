"""The commands that only read (help, the store listing, verification, the report, the plan and the store
check) start without torch, scikit-learn or matplotlib: each runs in a fresh interpreter (the only way to see
what a command imports) and reports which of them ended up in ``sys.modules``."""
import json
import subprocess
import sys

import pytest
from conftest import REPO

HEAVY = ("torch", "sklearn", "matplotlib")


def imported_after(argv: list[str], cwd) -> list[str]:
    code = ("import json, sys\nfrom naspoison.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["bench", "--help"], ["ls"], ["verify"], ["gc", "--dry-run"]])
def test_reading_commands_do_not_import_torch(argv, tmp_path):
    import shutil

    shutil.copytree(REPO / "cache" / "poison", tmp_path / "cache" / "poison")  # a few real records to verify
    assert imported_after(argv, tmp_path) == []


@pytest.mark.parametrize("argv", [["report", "suite.yaml", "--profile", "demo"],
                                  ["bench", "suite.yaml", "--profile", "demo", "--check"],
                                  ["bench", "suite.yaml", "--profile", "demo", "--plan"]])
def test_suite_readers_do_not_import_torch(argv):
    """The suite's schema, expansion and report need the parameter classes and registries, never the compute:
    run against the repository's own suite and committed store (these commands only read them)."""
    assert imported_after(argv, REPO) == []


def test_bench_defaults_to_one_worker_per_usable_core(monkeypatch):
    import os

    from naspoison import api, cli

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    args = cli.build_parser().parse_args(["bench", "suite.yaml"])
    assert args.workers is None
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert api.resolve_devices(args.devices, args.workers) == ["cpu", "cpu", "cpu"]
    assert api.resolve_devices(None, workers=1) == ["cpu"]
