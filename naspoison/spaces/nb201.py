"""The NAS-Bench-201 / NATS-Bench topology space: a cell of 4 nodes and 6 edges (node j takes every
node i < j), each edge one of 5 ops. 5⁶ = 15,625 cells.

The standard arch string lists, per node 1..3, its incoming edges as ``op~i``:
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``.

``to_index``/``from_index`` number the cells 0..15,624 in base 5 over the edges in string order,
ops in ``OPS`` order. This is naspoison's own numbering, not NATS-Bench's file order (which comes from
its meta file); lookups through ``nats_bench`` go by arch string.
"""
from __future__ import annotations

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = tuple((i, j) for j in range(1, 4) for i in range(j))  # (from, to) in arch-string order
N_ARCHS = len(OPS) ** len(EDGES)

Arch = tuple[str, ...]  # one op per edge, in EDGES order


def parse(arch: str) -> Arch:
    """Ops per edge from an arch string; errors name what is wrong."""
    nodes = arch.split("+")
    if len(nodes) != 3:
        raise ValueError(f"arch string {arch!r}: need 3 node groups separated by '+', got {len(nodes)}")
    ops = []
    for j, group in enumerate(nodes, start=1):
        if not (group.startswith("|") and group.endswith("|")):
            raise ValueError(f"arch string {arch!r}: node {j} group {group!r} must start and end with '|'")
        items = group[1:-1].split("|")
        if len(items) != j:
            raise ValueError(f"arch string {arch!r}: node {j} needs {j} inputs, got {len(items)}")
        for i, item in enumerate(items):
            op, _, src = item.partition("~")
            if op not in OPS:
                raise ValueError(f"arch string {arch!r}: unknown op {op!r}; known: {', '.join(OPS)}")
            if src != str(i):
                raise ValueError(f"arch string {arch!r}: node {j} input {i} reads '~{src}', expected '~{i}'")
            ops.append(op)
    return tuple(ops)


def to_string(ops: Arch) -> str:
    if len(ops) != len(EDGES) or any(op not in OPS for op in ops):
        raise ValueError(f"need {len(EDGES)} ops from {OPS}, got {ops!r}")
    groups, k = [], 0
    for j in range(1, 4):
        groups.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    return "+".join(groups)


def to_index(ops: Arch) -> int:
    index = 0
    for op in ops:
        index = index * len(OPS) + OPS.index(op)
    return index


def from_index(index: int) -> Arch:
    if not 0 <= index < N_ARCHS:
        raise ValueError(f"index {index} outside 0..{N_ARCHS - 1}")
    ops = []
    for _ in EDGES:
        index, r = divmod(index, len(OPS))
        ops.append(OPS[r])
    return tuple(reversed(ops))


# the network lives in nb201_net (it needs torch at import); ``nb201.Network`` etc. still resolve here
_NETWORK = ("ReLUConvBN", "Zero", "OP_MODULES", "Cell", "Reduction", "Network")


def __getattr__(name: str):
    if name in _NETWORK:
        from naspoison.spaces import nb201_net

        return getattr(nb201_net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
