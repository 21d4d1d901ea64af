"""What every backdoor defense receives: a trained model, the attacker's trigger (the Evas generator
or any function of [0, 1] images), the clean data and the target class (the last two only to
*score* a defense — the defenses themselves see clean data only, as their papers assume)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from naspoison.data.augment import channel_stats
from naspoison.data.datasets import ImageData
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
