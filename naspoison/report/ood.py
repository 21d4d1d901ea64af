"""The out-of-distribution search table (the poisoning paper's Table 3): a row per search dataset (the
in-distribution one first), Acc. and ΔImp per algorithm; every architecture retrained on the target
dataset. Each OOD row is tested against the same algorithm's in-distribution search (one-sided Welch,
BH per algorithm), exactly as a poisoned row is tested against the clean one."""
from __future__ import annotations

from naspoison.attacks import NO_ATTACK
from naspoison.report.analysis import TrialAccuracy, acc_dimp, acc_dimp_columns, analyse, notes
from naspoison.report.table import Column, Entry, Table

TITLES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "svhn": "SVHN", "cifar10": "CIFAR-10",
          "cifar100": "CIFAR-100", "digits": "digits", "photo_patches": "photo patches"}
TEST = ("one-sided Welch t-test, H0: searching on this dataset does not lower accuracy (vs the same algorithm's "
        "in-distribution search)")


def ood_section(accuracies: list[TrialAccuracy], baseline: list[float], target: str) -> dict:
    """``accuracies``: the OOD trials' accuracies, ``row`` holding the search dataset (``none``: the
    in-distribution search); ``target``: the dataset every architecture is retrained on. In the section each
    row names its search dataset as ``source``."""
    table = analyse(accuracies, baseline)
    table["test"] = TEST
    table["target"] = target
    for r in table["rows"]:
        attack = r.pop("attack")
        r["source"], r["in_distribution"] = (target, True) if attack == NO_ATTACK else (attack, False)
    return table


def source_title(r: dict) -> str:
    name = TITLES.get(r["source"], r["source"])
    return f"{name} (in-distribution)" if r["in_distribution"] else name


def tables(t: dict) -> list[Table]:
    """The poisoning paper's Table 3: a row per search dataset, (Acc., ΔImp.) per algorithm."""
    grid: dict[str, dict[str, dict]] = {}
    for r in t["rows"]:
        grid.setdefault(source_title(r), {})[r["algorithm"]] = r
    algs = t["algorithms"]
    target = TITLES.get(t["target"], t["target"])
    return [Table("Out-of-distribution search", [Column("Search dataset", left=True), *acc_dimp_columns(algs)],
                  [[Entry(name), *(e for a in algs for e in acc_dimp(by.get(a)))] for name, by in grid.items()],
                  [f"Every architecture retrained from scratch on {target}.",
                   *notes(t, row_name=source_title, nothing="No search dataset")],
                  group_name="algorithm", label="ood")]
