"""The benchmark suites under benchmarks/suites/ stay runnable: each validates, and each profile expands into
trials with every declared family present, without computing anything. A profile whose .npz is absent (a user's
machine, without the ../shared data beside the checkout) is skipped, with the file it needs as the reason."""
import re
from pathlib import Path

import pytest
import yaml

from naspoison.suite import Suite
from naspoison.suite.expand import expand

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
SUITES = sorted((BENCH / "suites").glob("*.yaml"))


def _profiles(path: Path) -> list[str]:
    # read with plain YAML, not with Suite, so that an invalid suite fails its own test instead of collection
    return list((yaml.safe_load(path.read_text()) or {}).get("profiles") or {})


CASES = [(p, prof) for p in SUITES for prof in _profiles(p)]


def test_there_are_suites():
    assert SUITES and CASES


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_suite_validates(path):
    Suite(path)  # schema and semantic checks; reads no data


@pytest.mark.parametrize("path, profile", CASES, ids=[f"{p.stem}-{prof}" for p, prof in CASES])
def test_profile_expands(path, profile):
    suite = Suite(path)
    absent = [ds.path for _, ds in suite.datasets_of(profile) if ds.name == "npz" and not Path(ds.path).exists()]
    if absent:
        pytest.skip(f"{path.name} profile {profile}: dataset file absent: {', '.join(absent)}")
    trials = expand(suite, profile).trials
    declared = set(yaml.safe_load(path.read_text())["families"])
    # a family that expands to nothing would silently drop its report section
    assert {t.family for t in trials} == declared
    labels = [t.label for t in trials]
    assert len(labels) == len(set(labels)), "two trials of one profile share a label"


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_commands_in_a_suite_name_that_suite(path):
    """The run commands in a suite's header comment are copied by users: they must run this file."""
    named = re.findall(r"naspoison bench (\S+\.yaml)", path.read_text())
    assert all(Path(n).name == path.name for n in named), named


def test_readme_classifies_every_benchmark_file():
    """benchmarks/README.md has a line for every script and suite (experiment vs speed / one-off)."""
    readme = (BENCH / "README.md").read_text()
    files = [p for p in BENCH.iterdir() if p.suffix in (".py", ".sh")] + SUITES
    missing = [n for n in (p.relative_to(BENCH).as_posix() for p in files) if f"`{n}`" not in readme]
    assert not missing, f"benchmarks/README.md does not classify {missing}"
