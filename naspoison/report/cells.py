"""Cell pictures (the poisoning paper's Figure 2 and NB201 cells): a genotype becomes a small labelled
graph (:class:`CellGraph`, what the tests check), which is then drawn with matplotlib as PNG or SVG.

DARTS cells: inputs c_{k-2}, c_{k-1}, intermediate nodes 0-3 (each with its two chosen (op, input)
edges) and the output c_k, fed by every node in the genotype's concat list (unlabelled edges, as in
the DARTS figures). NB201 cells: nodes 0-3 with one edge per (i, j), i < j, labelled with its op;
``none`` edges carry nothing and are not drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from naspoison.spaces import nb201
from naspoison.spaces.darts import N_INPUTS, Genotype

INPUT_NAMES = ("c_{k-2}", "c_{k-1}")
OUTPUT = "c_{k}"


@dataclass(frozen=True)
class CellGraph:
    title: str
    nodes: tuple[str, ...]                   # in drawing order (left to right)
    kinds: tuple[str, ...]                   # per node: input, node or output
    edges: tuple[tuple[str, str, str], ...]  # (source, target, op); op "" for concat edges


def darts_cell(genotype: Genotype, kind: str) -> CellGraph:
    """``kind``: normal or reduce."""
    if kind not in ("normal", "reduce"):
        raise ValueError(f"cell kind {kind!r}: normal or reduce")
    pairs, concat = getattr(genotype, kind), getattr(genotype, f"{kind}_concat")
    n_nodes = len(pairs) // 2

    def name(state: int) -> str:
        return INPUT_NAMES[state] if state < N_INPUTS else str(state - N_INPUTS)

    edges = [(name(inp), str(j // 2), op) for j, (op, inp) in enumerate(pairs)]
    edges += [(name(c), OUTPUT, "") for c in concat]
    nodes = (*INPUT_NAMES, *(str(i) for i in range(n_nodes)), OUTPUT)
    kinds = ("input",) * N_INPUTS + ("node",) * n_nodes + ("output",)
    return CellGraph(f"{kind} cell", nodes, kinds, tuple(edges))


def nb201_cell(arch: str) -> CellGraph:
    ops = nb201.parse(arch)
    edges = tuple((str(i), str(j), op) for (i, j), op in zip(nb201.EDGES, ops) if op != "none")
    return CellGraph("NB201 cell", ("0", "1", "2", "3"), ("input", "node", "node", "output"), edges)


def edge_id(k: int, src: str, dst: str, op: str) -> str:
    """The SVG id of a drawn edge, so what was rendered can be read back from the file."""
    return f"edge{k}:{src}->{dst}:{op or 'concat'}"


_COLOURS = {"input": "#9ecae1", "node": "#fdd49e", "output": "#a1d99b"}


def draw(graph: CellGraph, path: str | Path) -> Path:
    """Write ``graph`` to ``path`` (.png or .svg); needs matplotlib (the ``plots`` extra)."""
    path = Path(path)
    if path.suffix not in (".png", ".svg"):
        raise ValueError(f"{path}: pictures are .png or .svg")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import FancyArrowPatch
    except ImportError as e:
        raise RuntimeError("drawing cells needs matplotlib: pip install 'naspoison[plots]'") from e
    pos = _layout(graph)
    bends = edge_bends(graph, pos)
    labels = label_positions(graph, pos, bends)
    fig, ax = plt.subplots(figsize=(1.9 * len(graph.nodes) - 1, 3.8))
    for k, (src, dst, op) in enumerate(graph.edges):
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        bend = bends[k]
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), connectionstyle=f"arc3,rad={bend}", arrowstyle="-|>",
                                     mutation_scale=12, lw=1.1, color="#555" if op else "#aaa",
                                     shrinkA=17, shrinkB=17, gid=edge_id(k, src, dst, op)))
        if op:
            mx, my = labels[k]
            ax.text(mx, my, op, fontsize=7.5, ha="center", va="center",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9})
    for node, kind in zip(graph.nodes, graph.kinds):
        x, y = pos[node]
        ax.text(x, y, f"${node}$" if node.startswith("c_") else node, ha="center", va="center", fontsize=10,
                bbox={"boxstyle": "round,pad=0.45", "fc": _COLOURS[kind], "ec": "#333"})
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    ax.set_aspect("equal")
    ax.set_title(graph.title, fontsize=10)
    ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def edge_bends(graph: CellGraph, pos: dict) -> list[float]:
    """arc3 curvature of each edge; the concat edges into c_k run straight."""
    return [0.0 if dst == OUTPUT and not op else _bend(pos, src, dst, k) for k, (src, dst, op) in enumerate(graph.edges)]


def _label_box(op: str) -> tuple[float, float]:
    """Half width and half height of an op label in layout units (7.5 pt text at this figure's scale)."""
    return 0.03 * len(op) + 0.04, 0.1


def label_positions(graph: CellGraph, pos: dict, bends: list[float]) -> dict[int, tuple[float, float]]:
    """Each labelled edge's label on its own curve: the point nearest the middle whose box overlaps no
    node and no label already placed, and, where possible, no other edge (two edges can cross at their
    middles, e.g. 0->3 and 1->2 of an NB201 cell, and a label on the crossing names either)."""
    curves = {k: [_arc(pos[s], pos[d], bends[k], t / 40) for t in range(2, 39)] for k, (s, d, _) in enumerate(graph.edges)}
    placed: dict[int, tuple[float, float]] = {}
    boxes: list[tuple[float, float, float, float]] = [(x, y, 0.17, 0.17) for x, y in pos.values()]

    def badness(k: int, x: float, y: float, hw: float, hh: float) -> tuple[float, int]:
        overlap = max((min(hw + bw - abs(x - bx), hh + bh - abs(y - by)) for bx, by, bw, bh in boxes
                       if abs(x - bx) < hw + bw and abs(y - by) < hh + bh), default=0.0)
        crossed = sum(abs(px - x) < hw and abs(py - y) < hh for j, pts in curves.items() if j != k for px, py in pts)
        return overlap, crossed

    for k, (src, dst, op) in enumerate(graph.edges):
        if not op:
            continue
        hw, hh = _label_box(op)
        points = [_arc(pos[src], pos[dst], bends[k], t) for t in (0.5, 0.42, 0.58, 0.35, 0.65, 0.28, 0.72)]
        x, y = min(points, key=lambda p: badness(k, *p, hw, hh))  # ties: the earlier, nearer the middle
        placed[k] = (x, y)
        boxes.append((x, y, hw, hh))
    return placed


def _arc(p0, p1, rad: float, t: float) -> tuple[float, float]:
    """A point of matplotlib's arc3 connection: the quadratic Bézier through the control point
    midpoint + rad·(dy, −dx)."""
    (x0, y0), (x1, y1) = p0, p1
    cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
    return ((1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t ** 2 * x1, (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t ** 2 * y1)


def _bend(pos: dict, src: str, dst: str, k: int) -> float:
    """The curvature that keeps the edge farthest from the nodes it does not join (an edge must never
    seem to pass through a node); ties alternate by edge number so parallel edges part."""
    others = [p for n, p in pos.items() if n not in (src, dst)]
    sign = 1 if k % 2 else -1

    def clearance(rad: float) -> float:
        pts = [_arc(pos[src], pos[dst], rad, t / 10) for t in range(1, 10)]
        return min((min(((x - ox) ** 2 + (y - oy) ** 2) ** 0.5 for x, y in pts) for ox, oy in others), default=9.0)

    options = [sign * 0.2, -sign * 0.2, sign * 0.35, -sign * 0.35, 0.0]
    return max(options, key=lambda r: (min(clearance(r), 0.45), -abs(r)))


def _layout(graph: CellGraph) -> dict[str, tuple[float, float]]:
    """Inputs stacked on the left, the other nodes left to right in order, zig-zagging up and down."""
    pos, col = {}, 0
    inputs = [n for n, k in zip(graph.nodes, graph.kinds) if k == "input"]
    for i, n in enumerate(inputs):
        pos[n] = (0.0, 0.8 * (len(inputs) - 1) / 2 - 0.8 * i)
    for n, k in zip(graph.nodes, graph.kinds):
        if k == "input":
            continue
        col += 1
        pos[n] = (1.6 * col, 0.0 if k == "output" else (0.55 if col % 2 else -0.55))
    return pos


def draw_genotype(genotype: Genotype, out_dir: str | Path, stem: str, formats=("png", "svg")) -> list[Path]:
    """Normal and reduction cells of ``genotype`` as ``{stem}_{normal,reduce}.{fmt}``."""
    out = Path(out_dir)
    return [draw(darts_cell(genotype, kind), out / f"{stem}_{kind}.{fmt}") for kind in ("normal", "reduce")
            for fmt in formats]


def draw_nb201(arch: str, out_dir: str | Path, stem: str, formats=("png", "svg")) -> list[Path]:
    return [draw(nb201_cell(arch), Path(out_dir) / f"{stem}.{fmt}") for fmt in formats]
