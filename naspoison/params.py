"""The one pydantic base of every parameter model: component ``Params``, recipes, dataset specs, suite
sections. Unknown fields are errors (a typo in suite.yaml must not silently fall back to a default) and
values are not coerced ("1" is not 1), because a spec's key is the sha256 of its ``model_dump()``: what is
validated is exactly what is hashed.

Subclasses add fields only; a subclass that needs another setting extends ``model_config`` (pydantic merges
it with this one), so the strictness stays declared once.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
