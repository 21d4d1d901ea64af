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
