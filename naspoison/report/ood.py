"""The out-of-distribution search table (the poisoning paper's Table 3): a row per search dataset (the
in-distribution one first), Acc. and ΔImp per algorithm; every architecture retrained on the target
dataset. Each OOD row is tested against the same algorithm's in-distribution search (one-sided Welch,
BH per algorithm), exactly as a poisoned row is tested against the clean one."""
from __future__ import annotations

from naspoison.attacks import NO_ATTACK
from naspoison.report.analysis import TrialAccuracy, analyse

TITLES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "svhn": "SVHN", "cifar10": "CIFAR-10",
          "cifar100": "CIFAR-100", "digits": "digits", "photo_patches": "photo patches"}
TEST = ("one-sided Welch t-test, H0: searching on this dataset does not lower accuracy (vs the same algorithm's "
        "in-distribution search)")


def ood_section(accuracies: list[TrialAccuracy], baseline: list[float], target: str) -> dict:
    """``target``: the name of the dataset every architecture is retrained on."""
    table = analyse(accuracies, baseline)
    table["test"] = TEST
    table["target"] = target
    for r in table["rows"]:
        r["search_dataset"] = target if r["attack"] == NO_ATTACK else r["attack"]
    return table


def title(r: dict, target: str) -> str:
    name = TITLES.get(r["search_dataset"], r["search_dataset"])
    return f"{name} (in-distribution)" if r["attack"] == NO_ATTACK else name


def _grid(t: dict) -> dict[str, dict[str, dict]]:
    grid: dict[str, dict[str, dict]] = {}
    for r in t["rows"]:
        grid.setdefault(title(r, t["target"]), {})[r["algorithm"]] = r
    return grid


def notes(t: dict) -> list[str]:
    from naspoison.report.render import footnotes

    target = TITLES.get(t["target"], t["target"])
    return [f"Every architecture retrained from scratch on {target}."] + footnotes(t)


def markdown_lines(t: dict) -> list[str]:
    from naspoison.report.render import MARK, _acc, _dimp, _sig

    algs = t["algorithms"]
    lines = ["", "## Out-of-distribution search", "",
             "| Search dataset | " + " | ".join(f"{a} Acc. | {a} ΔImp." for a in algs) + " |",
             "|---|" + "---|---|" * len(algs)]
    for name, by_alg in _grid(t).items():
        cells = []
        for a in algs:
            r = by_alg.get(a)
            cells += (["-", "-"] if r is None else [f"**{_acc(r)}**{MARK}", f"**{_dimp(r)}**{MARK}"] if _sig(r)
                      else [_acc(r), _dimp(r)])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""] + [f"- {n}" for n in notes(t)]


def latex_lines(t: dict) -> list[str]:
    from naspoison.report.render import _acc, _dimp, _sig

    algs = t["algorithms"]

    def tex(s: str) -> str:
        return s.replace("±", r"$\pm$").replace("_", r"\_")

    def mark(s: str, sig: bool) -> str:
        return rf"\textbf{{\underline{{{s}}}}}" if sig else s

    out = [r"\begin{tabular}{l" + "rr" * len(algs) + "}", r"\toprule",
           "Search dataset & " + " & ".join(rf"\multicolumn{{2}}{{c}}{{{tex(a)}}}" for a in algs) + r" \\",
           " & " + " & ".join(r"Acc. & $\Delta$Imp." for _ in algs) + r" \\", r"\midrule"]
    for name, by_alg in _grid(t).items():
        cells = []
        for a in algs:
            r = by_alg.get(a)
            cells += ["-", "-"] if r is None else [mark(tex(_acc(r)), _sig(r)), mark(_dimp(r), _sig(r))]
        out.append(f"{tex(name)} & " + " & ".join(cells) + r" \\")
    return out + [r"\bottomrule", r"\end{tabular}"]


def console_table(t: dict):
    from rich.table import Table

    from naspoison.report.render import MARK, _acc, _dimp, _sig

    table = Table(title="Out-of-distribution search", caption="\n".join(notes(t)), caption_justify="left")
    table.add_column("Search dataset")
    for a in t["algorithms"]:
        table.add_column(f"{a}\nAcc.", justify="right")
        table.add_column(f"{a}\nΔImp.", justify="right")
    for name, by_alg in _grid(t).items():
        cells = []
        for a in t["algorithms"]:
            r = by_alg.get(a)
            cells += (["-", "-"] if r is None else
                      [f"[bold underline]{_acc(r)}[/]{MARK}", f"[bold underline]{_dimp(r)}[/]{MARK}"] if _sig(r)
                      else [_acc(r), _dimp(r)])
        table.add_row(name, *cells)
    return table
