"""Input-aware backdoors (Evas): the trigger generator, its training against a frozen model, ACC/ASR."""
from naspoison.backdoor.variants import VARIANTS

__all__ = ["VARIANTS", "TriggerGenerator"]


def __getattr__(name: str):
    if name == "TriggerGenerator":  # the network needs torch; the variant names do not
        from naspoison.backdoor.generator import TriggerGenerator

        return TriggerGenerator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
