"""The DARTS search space (Liu et al. 2019), as used by the poisoning paper (§4.1).

One definition serves everything: ``OPS`` is the whole vocabulary, ``EDGES`` the cell topology,
``Genotype`` the plain-data architecture (JSON by op name), and ``Cell``/``EvalNetwork`` build
the evaluation network from a genotype. The searchable supernet (``darts_supernet``) is built
from the same ops, edges, strides and input preprocessing. The ops and networks are defined in
``darts_net`` (they need torch at import; this module does not) and resolve here too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

OP_NAMES: tuple[str, ...] = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
N_INPUTS = 2      # c_{k-2}, c_{k-1}
N_NODES = 4       # intermediate nodes per cell
# (node, input) for every edge of the cell: node 2..5 takes every earlier state -> 14 edges.
EDGES: tuple[tuple[int, int], ...] = tuple(
    (node, inp) for node in range(N_INPUTS, N_INPUTS + N_NODES) for inp in range(node)
)


# ----------------------------------------------------------------------------- genotype
@dataclass(frozen=True)
class Genotype:
    """Per cell type, two (op, input state) pairs per intermediate node, in node order.

    Input state 0 and 1 are the two previous cells' outputs, k >= 2 is intermediate node k.
    """

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self):
        for kind in ("normal", "reduce"):
            pairs = getattr(self, kind)
            if len(pairs) != 2 * N_NODES:
                raise ValueError(f"{kind} cell needs {2 * N_NODES} (op, input) pairs, got {len(pairs)}")
            for j, (op, inp) in enumerate(pairs):
                node = N_INPUTS + j // 2
                if op not in OP_NAMES or op == "none":
                    raise ValueError(f"{kind}[{j}]: unknown or empty op {op!r}; ops: {OP_NAMES[1:]}")
                if not (isinstance(inp, int) and 0 <= inp < node):
                    raise ValueError(f"{kind}[{j}]: node {node} cannot take input {inp!r} (0..{node - 1})")
            concat = getattr(self, f"{kind}_concat")
            if not concat or any(not N_INPUTS <= c < N_INPUTS + N_NODES for c in concat):
                raise ValueError(f"{kind}_concat {concat!r} must name intermediate nodes 2..5")

    def to_dict(self) -> dict:
        return {
            "normal": [[op, inp] for op, inp in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, inp] for op, inp in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> Genotype:
        unknown = set(d) - {"normal", "normal_concat", "reduce", "reduce_concat"}
        if unknown:
            raise ValueError(f"unknown genotype fields {sorted(unknown)}")
        return cls(
            normal=tuple((str(op), int(i)) for op, i in d["normal"]),
            normal_concat=tuple(int(c) for c in d.get("normal_concat", range(2, 6))),
            reduce=tuple((str(op), int(i)) for op, i in d["reduce"]),
            reduce_concat=tuple(int(c) for c in d.get("reduce_concat", range(2, 6))),
        )

    @classmethod
    def from_json(cls, s: str) -> Genotype:
        return cls.from_dict(json.loads(s))


def sample_genotype(rng: np.random.Generator, ops: tuple[str, ...] | list[str] = OP_NAMES[1:]) -> Genotype:
    """Uniform random DARTS genotype: per node two distinct inputs (sorted), each with a uniform op from ``ops``
    (default: every non-none op)."""

    def cell() -> tuple[tuple[str, int], ...]:
        pairs = []
        for node in range(N_INPUTS, N_INPUTS + N_NODES):
            for inp in sorted(rng.choice(node, size=2, replace=False).tolist()):
                pairs.append((ops[int(rng.integers(len(ops)))], int(inp)))
        return tuple(pairs)

    normal = cell()
    reduce = cell()
    concat = tuple(range(N_INPUTS, N_INPUTS + N_NODES))
    return Genotype(normal, concat, reduce, concat)


# Published genotypes (architectures are data reported in the papers).
DARTS_V2 = Genotype(
    normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)),
    normal_concat=(2, 3, 4, 5),
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)),
    reduce_concat=(2, 3, 4, 5),
)
PDARTS_GENOTYPE = Genotype(
    normal=(("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)),
    normal_concat=(2, 3, 4, 5),
    reduce=(("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
            ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)),
    reduce_concat=(2, 3, 4, 5),
)
PUBLISHED = {"darts_v2": DARTS_V2, "pdarts": PDARTS_GENOTYPE}


# the operations and networks live in darts_net (they need torch at import); ``darts.EvalNetwork`` etc. still
# resolve here
_NETWORK = (
    "OPS", "OpFactory", "ReLUConvBN", "DilConv", "SepConv", "Zero", "FactorizedReduce", "drop_path",
    "reduction_positions", "edge_stride", "preprocess_inputs", "Cell", "AuxiliaryHead", "EvalNetwork",
    "count_parameters", "Logits",
)


def __getattr__(name: str):
    if name in _NETWORK:
        from naspoison.spaces import darts_net

        return getattr(darts_net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
