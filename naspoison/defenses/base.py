"""The protocol every backdoor defense subclasses, and what it receives: a trained model, the attacker's trigger (the Evas generator
or any function of [0, 1] images), the clean data and the target class (the last two only to
*score* a defense — the defenses themselves see clean data only, as their papers assume)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from naspoison.data.augment import channel_stats
from naspoison.data.datasets import ImageData
from naspoison.params import StrictParams
from naspoison._lazy import lazy, no_grad

torch = lazy("torch", globals())
nn = lazy("torch.nn", globals())


@dataclass
class Suspect:
    model: nn.Module                                   # returns (logits, aux) like every network here
    trigger: Callable[[torch.Tensor], torch.Tensor]    # [B,C,H,W] on [0,1] → triggered, same scale
    data: ImageData
    target: int
    device: torch.device

    def __post_init__(self):
        mean, std = channel_stats(self.data.x_train)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.model = self.model.to(self.device).eval()

    def images(self, split: str, idx: np.ndarray | None = None) -> torch.Tensor:
        x = self.data.x_train if split == "train" else self.data.x_test
        x = x if idx is None else x[idx]
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(0, 3, 1, 2).float().div(255)

    def labels(self, split: str) -> torch.Tensor:
        y = self.data.y_train if split == "train" else self.data.y_test
        return torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)

    def logits(self, x01: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
        return (model or self.model)((x01 - self.mean) / self.std)[0]

    @no_grad
    def predict(self, x01: torch.Tensor, model: nn.Module | None = None, batch: int = 500) -> torch.Tensor:
        return torch.cat([self.logits(x01[i:i + batch], model).argmax(1) for i in range(0, len(x01), batch)])

    @no_grad
    def triggered(self, x01: torch.Tensor, batch: int = 500) -> torch.Tensor:
        return torch.cat([self.trigger(x01[i:i + batch]) for i in range(0, len(x01), batch)])

    def acc_asr(self, model: nn.Module | None = None) -> dict:
        """ACC on clean test images; ASR on triggered test images whose class is not the target."""
        x, y = self.images("test"), self.labels("test")
        keep = y != self.target
        acc = (self.predict(x, model) == y).float().mean().item()
        asr = (self.predict(self.triggered(x[keep]), model) == self.target).float().mean().item()
        return {"acc": acc, "asr": asr}


class BackdoorDefense:
    """A backdoor defense (Evas Tables 4-5): the protocol every entry of ``DEFENSES`` subclasses."""

    name: ClassVar[str]
    """The registry key and the name in suite.yaml and in keys."""
    title: ClassVar[str]
    """How tables name it."""
    table: ClassVar[str] = "Backdoor defenses"
    """The report table its columns go in; defenses naming the same table share it (one row per architecture)."""
    note: ClassVar[str] = ""
    """What its columns mean, for the table's note."""
    Params: ClassVar[type[StrictParams]]
    """Its parameters (profiles' ``evas.defenses: {name: {...}}``); a defense key holds their ``model_dump()``."""

    def run(self, suspect: Suspect, params: StrictParams, log: Callable[[str], None] | None = None) -> dict:
        """Inspect ``suspect.model`` from clean data only; ``suspect.trigger``/``target`` serve to score it. The
        returned dict is the whole result (the cell keeps it)."""
        raise NotImplementedError

    @staticmethod
    def summary(result: dict) -> dict:
        """The numbers of ``run``'s result that the report's tables show (a subset of it)."""
        raise NotImplementedError

    @staticmethod
    def aggregate(summaries: list[dict]) -> dict:
        """One architecture's numbers in report.json, over its training seeds (``summary`` of each cell)."""
        raise NotImplementedError

    @staticmethod
    def columns(entry: dict | None) -> list[tuple[str, str]]:
        """(column header, text) it adds to its table's row of one architecture (``entry``: ``aggregate``'s dict
        with ``n``, the number of seeds; None where it did not run)."""
        raise NotImplementedError


def mean_sd(values: list[float]) -> dict:
    """{"mean", "std"} over training seeds (std 0 for one seed): what the report prints as mean ± sd."""
    import statistics

    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
