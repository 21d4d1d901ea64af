"""Cell pictures: the drawn graph has exactly the genotype's edges and ops (read back from the SVG's
edge ids, not pixels), NB201 ``none`` edges are left out, and ``naspoison draw`` writes PNG and SVG."""
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from naspoison.cli import main
from naspoison.report import cells
from naspoison.spaces import nb201
from naspoison.spaces.darts import PDARTS_GENOTYPE, sample_genotype


def _svg_edges(path):
    """(source, target, op) of every edge drawn into an SVG written by cells.draw."""
    ids = [el.get("id") for el in ET.parse(path).iter() if (el.get("id") or "").startswith("edge")]
    return sorted(tuple(re.fullmatch(r"edge\d+:(.+)->(.+):(.+)", i).groups()) for i in ids)


def _expected_darts(pairs, concat):
    # Written out independently of cells.darts_cell: states 0, 1 are the cell inputs, state s >= 2
    # is intermediate node s - 2; pair j feeds node j // 2.
    names = {0: "c_{k-2}", 1: "c_{k-1}", 2: "0", 3: "1", 4: "2", 5: "3"}
    edges = [(names[inp], str(j // 2), op) for j, (op, inp) in enumerate(pairs)]
    return sorted(edges + [(names[c], "c_{k}", "concat") for c in concat])


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_drawn_darts_cells_have_exactly_the_genotypes_edges(tmp_path, seed):
    g = PDARTS_GENOTYPE if seed is None else sample_genotype(np.random.default_rng(seed))
    files = cells.draw_genotype(g, tmp_path, "g", formats=("svg", "png"))
    assert sorted(p.name for p in files) == ["g_normal.png", "g_normal.svg", "g_reduce.png", "g_reduce.svg"]
    for kind in ("normal", "reduce"):
        drawn = _svg_edges(tmp_path / f"g_{kind}.svg")
        assert drawn == _expected_darts(getattr(g, kind), getattr(g, f"{kind}_concat"))
        assert len(drawn) == 8 + 4
        assert (tmp_path / f"g_{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nb201_cell_leaves_out_none_edges(tmp_path):
    arch = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
    (svg,) = cells.draw_nb201(arch, tmp_path, "a", formats=("svg",))
    assert _svg_edges(svg) == sorted([("0", "1", "nor_conv_3x3"), ("1", "2", "skip_connect"),
                                      ("0", "3", "avg_pool_3x3"), ("2", "3", "nor_conv_1x1")])
    all_none = "|" + "|+|".join("|".join(f"none~{i}" for i in range(j)) for j in (1, 2, 3)) + "|"
    assert nb201.parse(all_none) == ("none",) * 6
    assert cells.nb201_cell(all_none).edges == ()


def test_draw_cli_writes_png_and_svg_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "pics"
    assert main(["draw", "--genotype", "darts_v2", "--arch",
                 "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|",
                 "--out", str(out), "--store", str(tmp_path / "store")]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "genotype_normal.png", "genotype_normal.svg", "genotype_reduce.png", "genotype_reduce.svg",
        "nb201.png", "nb201.svg"]
    gfile = tmp_path / "g.json"
    gfile.write_text(PDARTS_GENOTYPE.to_json())
    assert main(["draw", "--genotype", str(gfile), "--name", "p", "--format", "svg", "--out", str(out)]) == 0
    assert _svg_edges(out / "p_normal.svg") == _expected_darts(PDARTS_GENOTYPE.normal, PDARTS_GENOTYPE.normal_concat)
    for bad in (["--genotype", "not_a_genotype"], ["--arch", "|conv~0|"], ["--genotype", "pdarts", "--format", "jpg"],
                []):
        assert main(["draw", *bad, "--out", str(out)]) == 2, bad
    assert "not a published name" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["nb201", "pdarts"])
def test_labels_sit_on_their_own_edge_clear_of_nodes_and_each_other(which):
    # NB201 0->3 and 1->2 cross at both their middles: labels there would read as one
    graph = (cells.nb201_cell("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|"
                              "nor_conv_3x3~2|") if which == "nb201" else cells.darts_cell(PDARTS_GENOTYPE, "normal"))
    pos = cells._layout(graph)
    bends = cells.edge_bends(graph, pos)
    labels = cells.label_positions(graph, pos, bends)
    assert set(labels) == {k for k, (_, _, op) in enumerate(graph.edges) if op}
    boxes = []
    for k, (x, y) in labels.items():
        s, d, op = graph.edges[k]
        on_curve = min(np.hypot(*np.subtract(cells._arc(pos[s], pos[d], bends[k], t / 200), (x, y))) for t in range(201))
        assert on_curve < 1e-9  # on its own edge
        boxes.append((x, y, *cells._label_box(op)))
    for i, (x, y, w, h) in enumerate(boxes):
        assert all(abs(x - nx) >= w + 0.17 or abs(y - ny) >= h + 0.17 for nx, ny in pos.values())
        assert all(abs(x - bx) >= w + bw or abs(y - by) >= h + bh for bx, by, bw, bh in boxes[i + 1:])
