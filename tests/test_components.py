"""Conformance of every registered component to its kind's protocol: the registry key is the class's name,
the class subclasses the protocol, declares every capability with the protocol's type, has strict Params, and
its entry point accepts the protocol's call; ``get`` of a typo names the nearest entry."""
import ast
import inspect
import textwrap
import typing

import pytest
from pydantic import ValidationError

from naspoison import attacks, defenses, nas, sanitize
from naspoison.attacks import Attack
from naspoison.backdoor import scenarios
from naspoison.backdoor.scenarios import Scenario
from naspoison.defenses import BackdoorDefense
from naspoison.nas import NASAlgorithm
from naspoison.nas.evas import EvasSearch
from naspoison.params import StrictParams
from naspoison.sanitize import Sanitizer
from naspoison.suite import Suite, SuiteError

# kind -> (registry, protocol, the methods a caller calls, the package's get)
KINDS = {
    "attack": (attacks.ATTACKS, Attack, ("poison", "params_for_victim"), attacks.get),
    "algorithm": (nas.ALGORITHMS, NASAlgorithm, ("search",), nas.get),
    "sanitizer": (sanitize.SANITIZERS, Sanitizer, ("apply",), sanitize.get),
    "defense": (defenses.DEFENSES, BackdoorDefense, ("run", "summary", "aggregate", "columns"), defenses.get),
    "scenario": (scenarios.SCENARIOS, Scenario, ("run",), scenarios.get),
}
ENTRIES = [(kind, key, cls) for kind, (registry, *_) in KINDS.items() for key, cls in registry.items()]
ENTRIES.append(("algorithm", "evas", EvasSearch))  # the NB201 search: same protocol, its own family
IDS = [f"{kind}:{key}" for kind, key, _ in ENTRIES]
WITH_PARAMS = [e for e in ENTRIES if e[0] != "scenario"]  # a scenario's numbers are the profile's finetune recipe

# Params fields without a default: the suite validator must name them when a profile leaves them out
NO_DEFAULT = {("algorithm", "pdarts"): {"skip_dropout"}}


def capabilities(proto: type) -> dict[str, object]:
    """The protocol's declared class attributes and their types (ClassVar unwrapped)."""
    hints = typing.get_type_hints(proto, include_extras=False)
    return {name: typing.get_args(t)[0] if typing.get_origin(t) is typing.ClassVar else t for name, t in hints.items()}


def conforms(value, t) -> bool:
    origin = typing.get_origin(t)
    if origin is typing.Literal:
        return value in typing.get_args(t)
    if origin is type:
        return isinstance(value, type) and issubclass(value, typing.get_args(t)[0])
    if t is str:
        return isinstance(value, str) and value != ""
    return isinstance(value, t)


def test_every_registry_is_covered():
    assert {cls for _, _, cls in ENTRIES} >= {c for r, *_ in KINDS.values() for c in r.values()}
    assert len(ENTRIES) == sum(len(r) for r, *_ in KINDS.values()) + 1


@pytest.mark.parametrize("kind, key, cls", ENTRIES, ids=IDS)
def test_entry_subclasses_its_protocol_under_its_own_name(kind, key, cls):
    assert issubclass(cls, KINDS[kind][1])
    assert cls.name == key


@pytest.mark.parametrize("kind, key, cls", ENTRIES, ids=IDS)
def test_declared_capabilities_have_the_declared_types(kind, key, cls):
    proto = KINDS[kind][1]
    caps = capabilities(proto)
    assert {"name", "title"} <= set(caps)
    for attr, t in caps.items():
        assert hasattr(cls, attr), f"{cls.__name__} does not set {attr}"
        assert conforms(getattr(cls, attr), t), f"{cls.__name__}.{attr} = {getattr(cls, attr)!r} is not a {t}"


@pytest.mark.parametrize("proto", [p for _, p, *_ in KINDS.values()], ids=list(KINDS))
def test_every_capability_is_documented_in_its_protocol(proto):
    """Each annotated attribute of the protocol class is followed by its docstring line."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(proto)))
    body = tree.body[0].body
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign):
            nxt = body[i + 1] if i + 1 < len(body) else None
            assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str), \
                f"{proto.__name__}.{node.target.id} has no docstring"


@pytest.mark.parametrize("kind, key, cls", WITH_PARAMS, ids=[f"{k}:{n}" for k, n, _ in WITH_PARAMS])
def test_params_are_strict(kind, key, cls):
    assert issubclass(cls.Params, StrictParams)
    with pytest.raises(ValidationError) as err:
        cls.Params.model_validate({"no_such_field": 1})
    assert any(e["type"] == "extra_forbidden" for e in err.value.errors())


@pytest.mark.parametrize("kind, key, cls", WITH_PARAMS, ids=[f"{k}:{n}" for k, n, _ in WITH_PARAMS])
def test_default_params_validate_or_their_missing_fields_are_listed(kind, key, cls):
    try:
        cls.Params()
        missing = set()
    except ValidationError as e:
        assert all(x["type"] == "missing" for x in e.errors()), e
        missing = {".".join(map(str, x["loc"])) for x in e.errors()}
    assert missing == NO_DEFAULT.get((kind, key), set())


@pytest.mark.parametrize("kind, key", sorted(NO_DEFAULT))
def test_the_suite_validator_names_a_field_without_default(tmp_path, kind, key):
    assert kind == "algorithm"  # the validator's "used but not set" rule covers attacks and algorithms
    path = tmp_path / "suite.yaml"
    path.write_text(f"version: 1\nfamilies:\n  poisoning:\n    attacks: [none]\n    budgets: [0.1]\n"
                    f"    algorithms: [{key}]\nprofiles:\n  p:\n    seeds: 1\n    dataset: {{name: digits}}\n")
    with pytest.raises(SuiteError) as err:
        Suite(path)
    for field in NO_DEFAULT[(kind, key)]:
        assert field in str(err.value)


def _accepts(proto_fn, impl_fn) -> None:
    """``impl_fn`` takes every parameter of ``proto_fn`` under the same name, kind and default, in the same
    order; anything it adds after them has a default (so the protocol's call works unchanged)."""
    want = list(inspect.signature(proto_fn).parameters.values())
    have = list(inspect.signature(impl_fn).parameters.values())
    assert [(p.name, p.kind, p.default) for p in have[:len(want)]] == [(p.name, p.kind, p.default) for p in want]
    for extra in have[len(want):]:
        assert extra.default is not inspect.Parameter.empty or extra.kind in (extra.VAR_POSITIONAL, extra.VAR_KEYWORD)


@pytest.mark.parametrize("kind, key, cls", ENTRIES, ids=IDS)
def test_entry_points_have_the_protocol_signature(kind, key, cls):
    proto, methods = KINDS[kind][1], KINDS[kind][2]
    for m in methods:
        assert isinstance(inspect.getattr_static(cls, m), staticmethod) == isinstance(inspect.getattr_static(proto, m), staticmethod)
        _accepts(getattr(proto, m), getattr(cls, m))
    overridden = {m for m in methods if m in vars(cls)}
    assert KINDS[kind][2][0] in overridden, f"{cls.__name__} does not implement {methods[0]}"
    if kind == "algorithm" and cls.gc_target == "alphas":  # the protocol's promise to the NAS-aware attack
        assert "keep" in inspect.signature(cls.search).parameters


def _typo(name: str) -> str:
    """Drop one letter from the middle."""
    i = len(name) // 2
    return name[:i] + name[i + 1:]


@pytest.mark.parametrize("kind", list(KINDS))
def test_get_returns_the_entry_and_a_typo_names_the_nearest(kind):
    registry, _, _, get = KINDS[kind]
    for key, cls in registry.items():
        assert get(key) is cls
        with pytest.raises(KeyError) as err:
            get(_typo(key))
        assert f"did you mean {key!r}" in str(err.value)
    with pytest.raises(KeyError, match="known: "):
        get("zzzzzzzz")
