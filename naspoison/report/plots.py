"""Pictures from a report (the optional ``plots`` extra: matplotlib). Written next to the report files;
not part of ``--check``, which compares ``report.json`` only."""
from __future__ import annotations

from pathlib import Path


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def score_vs_attack(report: dict, path: Path) -> Path | None:
    """Evas Figure 2: the trigger-NTK score of sampled NB201 cells against their ASR and ACC."""
    sample = report.get("evas", {}).get("study", {}).get("sample")
    if not sample or not available():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sample["rows"]
    score = [r["score"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    for ax, key, name, corr in ((axes[0], "asr", "ASR (%)", sample["spearman_score_asr"]),
                                (axes[1], "acc", "ACC (%)", sample["spearman_score_acc"])):
        ax.scatter(score, [100 * r[key] for r in rows], s=14, alpha=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("score κ (C×C trigger NTK; lower = more exploitable)")
        ax.set_ylabel(name)
        rho = "undefined" if corr["rho"] is None else f"{corr['rho']:+.2f}"
        ax.set_title(f"Spearman ρ = {rho} (n = {corr['n']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def delta_imp(report: dict, path: Path) -> Path | None:
    """ΔImp per attack against the poisoning budget, one panel per algorithm (the no-attack ΔImp as a
    dashed line, the cell's accuracy std as error bars, significant drops filled)."""
    rows = [r for r in report.get("rows", []) if r.get("delta_imp") is not None]
    if not rows or not available():
        return None
    from naspoison.report.analysis import attack_title

    plt = _pyplot()
    algs = report["algorithms"]
    fig, axes = plt.subplots(1, len(algs), figsize=(3.4 * len(algs) + 1.6, 3.4), sharey=True, squeeze=False)
    attacks = sorted({r["attack"] for r in rows if r["budget"] is not None})
    colours = {a: f"C{i}" for i, a in enumerate(attacks)}
    for ax, alg in zip(axes[0], algs):
        mine = [r for r in rows if r["algorithm"] == alg]
        clean = next((r for r in mine if r["budget"] is None), None)
        if clean is not None:
            ax.axhline(clean["delta_imp"], color="k", ls="--", lw=1, label="no attack")
        ax.axhline(0, color="#999", lw=0.8)
        for a in attacks:
            pts = sorted((r for r in mine if r["attack"] == a), key=lambda r: r["budget"])
            if not pts:
                continue
            x = [100 * r["budget"] for r in pts]
            ax.errorbar(x, [r["delta_imp"] for r in pts], yerr=[r["std"] or 0 for r in pts], color=colours[a],
                        marker="o", mfc="white", capsize=2, lw=1.2, label=attack_title(a))
            sig = [(xi, r["delta_imp"]) for xi, r in zip(x, pts) if r.get("test", {}).get("significant")]
            if sig:
                ax.plot(*zip(*sig), "o", color=colours[a], ms=6)
        ax.set_xscale("log")
        ax.set_xlabel("poisoning budget p (%)")
        ax.set_title(alg, fontsize=10)
    axes[0][0].set_ylabel("ΔImp. (points over random sampling)")
    legend = {}  # every attack once, whichever panels it appears in
    for ax in axes[0]:
        legend.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(list(legend.values()), list(legend), loc="center right", fontsize=8, frameon=False)
    fig.set_figwidth(fig.get_figwidth() + 1.2)
    fig.tight_layout(rect=(0, 0, 1 - 2.9 / fig.get_figwidth(), 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def metric_sensitivity(report: dict, path: Path) -> Path | None:
    """Mean ± std % change of each training-free metric per attack (symmetric-log axis: κ_NTK's spread is
    orders of magnitude wider than the others')."""
    t = report.get("sensitivity", {})
    if not t.get("rows") or not available():
        return None
    from naspoison.report.analysis import attack_title
    from naspoison.report.sensitivity import TITLES

    plt = _pyplot()
    ms, rows = t["metrics"], t["rows"]
    fig, ax = plt.subplots(figsize=(1.2 * len(ms) + 2.8, 3.6))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        x = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(ms))]
        mean = [r["change"][m]["mean"] or 0.0 for m in ms]
        std = [r["change"][m]["std"] or 0.0 for m in ms]
        ax.errorbar(x, mean, yerr=std, fmt="o", ms=4, capsize=2, lw=1, label=attack_title(r["attack"]))
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xticks(range(len(ms)), [f"{t['groups'][m]}\n{TITLES.get(m, m)}" for m in ms], fontsize=8)
    ax.set_ylabel("change, poisoned vs clean (%)")
    ax.set_title(f"Training-free metrics under poisoning ({t['archs']} architectures)", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
