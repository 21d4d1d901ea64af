"""Input-aware backdoors (Evas): the trigger generator, its training against a frozen model, ACC/ASR."""
from naspoison.backdoor.generator import VARIANTS, TriggerGenerator

__all__ = ["VARIANTS", "TriggerGenerator"]
