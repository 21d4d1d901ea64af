"""The two trigger-generator variants of the input-aware backdoor (VinAI's and trojanzoo's), by name: kept apart
from the generator network so that the suite's validation reads the names without torch."""
from __future__ import annotations

from dataclasses import dataclass

from naspoison._lazy import lazy

torch = lazy("torch", globals())


@dataclass(frozen=True)
class Variant:
    name: str
    normalised_input: bool      # does the generator read the normalised image?
    diversity_on_triggered: bool  # pattern stage: triggered images over patterns (else sources over patterns)
    distance: str                 # per-sample distance of the diversity term: "l2" or "rms"
    eps: float                    # added to the denominator of the diversity term

    def squash_mask(self, raw: torch.Tensor) -> torch.Tensor:
        if self.name == "vinai":  # threshold(tanh(raw)/2 + 0.5), written as VinAI's code composes it
            return (torch.tanh(20 * (torch.tanh(raw) / 2 + 0.5) - 10) + 1) / 2
        return (torch.tanh(10 * torch.tanh(raw)) + 1) / 2

    @staticmethod
    def squash_pattern(raw: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(raw) + 1) / 2


VARIANTS = {v.name: v for v in (Variant("vinai", True, False, "rms", 1e-7), Variant("trojanzoo", False, True, "l2", 1e-5))}
