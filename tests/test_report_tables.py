"""Every report section in every format, from the one table model: each table's title and each row's first
entry appear in the Markdown, LaTeX and console output; hostile text (LaTeX specials, Markdown's |, rich
markup) comes out literally in each; an NB201 architecture string keeps the Markdown table's shape; the
significance mark goes on significant entries only.

The Markdown is read back with markdown-it (rich's own Markdown parser, GFM tables enabled), the LaTeX with
a hand-written table of the escapes LaTeX defines, the console as the text rich prints: none of them is the
renderer's own code."""
import json
import re
import subprocess
import sys

import pytest
from conftest import REPO
from markdown_it import MarkdownIt
from rich.console import Console

from naspoison.report import evas, render
from naspoison.report.stats import MARK
from naspoison.report.table import Column, Entry, Table

HOSTILE = r"[x] 50% a_b | c & d \ e $f$ [bold]x[/bold] {g} #h ~i ^j *k* `l` <m>"
NB201 = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> dict:
    """The report of the committed demo store (read-only), as ``naspoison report`` builds it."""
    out = tmp_path_factory.mktemp("report")
    run = subprocess.run([sys.executable, "-m", "naspoison.cli", "report", "suite.yaml", "--profile", "demo",
                          "--store", "cache", "--out", str(out)], cwd=REPO, capture_output=True, text=True, check=False,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads((out / "report.json").read_text())


def console_text(report_or_tables, width: int = 2000) -> str:
    con = Console(record=True, width=width, color_system=None)
    if isinstance(report_or_tables, dict):
        con.print(render.to_console(report_or_tables))
    else:
        for t in report_or_tables:
            con.print(render.console_table(t))
    return con.export_text()


def md_tables(text: str) -> list[list[list[str]]]:
    """Every GFM table in ``text`` as rows of entry texts (header row first), as a Markdown reader sees them."""
    tokens = MarkdownIt("commonmark").enable("table").enable("strikethrough").parse(text)
    tables, row, in_table = [], None, False
    for tok in tokens:
        if tok.type == "table_open":
            tables.append([])
        elif tok.type == "tr_open":
            row = []
            tables[-1].append(row)
        elif tok.type == "inline" and row is not None and tables and tok.level > 0 and in_table:
            row.append("".join(c.content for c in tok.children if c.type in ("text", "code_inline")))
        if tok.type in ("th_open", "td_open"):
            in_table = True
        elif tok.type in ("th_close", "td_close"):
            in_table = False
        elif tok.type == "table_close":
            row = None
    return tables


def md_text(text: str) -> str:
    """All the text a Markdown reader shows, outside tables included."""
    tokens = MarkdownIt("commonmark").enable("table").enable("strikethrough").parse(text)
    return "\n".join("".join(c.content for c in tok.children if c.type in ("text", "code_inline"))
                     for tok in tokens if tok.type == "inline")


# LaTeX's own escapes for its special characters (and the symbols the report uses), read back to plain text
UNTEX = [(r"\textbackslash{}", "\\"), (r"\textasciitilde{}", "~"), (r"\textasciicircum{}", "^"),
         (r"\textbar{}", "|"), (r"\textless{}", "<"), (r"\textgreater{}", ">"), (r"\%", "%"), (r"\&", "&"),
         (r"\_", "_"), (r"\#", "#"), (r"\$", "$"), (r"\{", "{"), (r"\}", "}"), ("{[}", "["), ("{]}", "]"), ("{*}", "*"), (r"$\pm$", "±"), (r"$-$", "−"),
         (r"$\Delta$", "Δ"), (r"$\kappa$", "κ"), (r"$\rho$", "ρ"), (r"$\alpha$", "α"), (r"$\cdot$", "·"),
         (r"$\infty$", "∞"), (r"\dag{}", "†"), ("---", "—"), ("--", "–")]


def untex(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        for esc, plain in UNTEX:
            if s.startswith(esc, i):
                out.append(plain)
                i += len(esc)
                break
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def balanced(tex: str) -> bool:
    depth = 0
    for m in re.finditer(r"\\.|[{}]", tex):
        if m.group() in "{}":
            depth += 1 if m.group() == "{" else -1
            if depth < 0:
                return False
    return depth == 0


def tex_entry(e: str) -> str:
    """An entry read back to text: monospace and the significance mark's bold + underline + dagger unwrapped."""
    e = e.strip()
    if m := re.fullmatch(r"\\textbf\{\\underline\{(.*)\}\}\\textsuperscript\{\\dag\}", e):
        return tex_entry(m.group(1)) + "†"
    if m := re.fullmatch(r"\\texttt\{(.*)\}", e):
        e = m.group(1)
    return untex(e)


def tex_rows(tex: str) -> list[list[str]]:
    """The tabular rows of a LaTeX fragment, split at unescaped &, each entry read back to text."""
    return [[tex_entry(e) for e in re.split(r"(?<!\\)&", line[:-3])] for line in tex.splitlines()
            if line.endswith(r" \\")]


def test_every_section_appears_in_every_format(demo_report):
    tables = render.tables(demo_report)
    md, tex, con = render.to_markdown(demo_report), render.to_latex(demo_report), console_text(demo_report)
    from naspoison.families import FAMILIES

    for name, fam in FAMILIES.items():  # every family with a section has tables in the demo (which has them all)
        if fam.section_tables or name == "poisoning":
            assert fam.tables(demo_report), f"the demo has {name}'s tables"
    titles = [t.title for t in tables]
    # the drift issue 23 names: Evas Tables 4-5 and the score study were in the Markdown only
    for must in ("Evas Table 1", "Evas Table 4", "Evas Table 5", "Evas Figure 2", "Evas Figure 5", "appendix A.3",
                 "countermeasures", "Out-of-distribution", "Sensitivity"):
        assert any(must in t for t in titles), must
    shown_md, shown_tex = md_text(md), untex(tex)
    md_firsts = {row[0] for table in md_tables(md) for row in table}
    tex_firsts = {row[0] for row in tex_rows(tex)}
    for t in tables:
        assert t.title in shown_md and t.title in shown_tex and t.title in con, t.title
        for row in t.rows:
            first = row[0].text
            assert first in md_firsts and first in tex_firsts and first in con, (t.title, first)
        for note in t.notes:
            assert note in shown_md and note in shown_tex, note
    assert tex.count(r"\begin{table}") == len(tables) == md.count("\n## ") + md.startswith("## ")
    assert balanced(tex)


def test_a_section_without_rows_shows_its_note_everywhere():
    report = {"sensitivity": {"note": "the clean metric cell is not in the store yet: no changes to report"}}
    note = report["sensitivity"]["note"]
    assert note in md_text(render.to_markdown(report)) and note in untex(render.to_latex(report))
    assert note in console_text(report)


def hostile_table() -> Table:
    return Table(HOSTILE, [Column(HOSTILE, left=True), Column("n"), Column("b", group=HOSTILE)],
                 [[Entry(HOSTILE), Entry("1"), Entry("2")], [Entry("x"), Entry(HOSTILE, significant=True), Entry("3")],
                  [Entry("y"), Entry("4"), Entry(HOSTILE, code=True)]],
                 [HOSTILE])


def test_hostile_text_renders_literally_in_markdown():
    text = "\n".join(render.markdown_table(hostile_table()))
    (table,) = md_tables(text)
    assert [len(r) for r in table] == [3, 3, 3, 3]  # no | split an entry
    assert table[0] == [HOSTILE, "n", f"{HOSTILE} b"]
    assert table[1][0] == HOSTILE and table[2][1] == HOSTILE + MARK and table[3][2] == HOSTILE
    shown = md_text(text)
    assert shown.splitlines()[0] == HOSTILE and shown.splitlines()[-1] == HOSTILE  # the title and the note


def test_hostile_text_renders_escaped_in_latex():
    tex = "\n".join(render.latex_table(hostile_table()))
    assert balanced(tex)
    for escaped in (r"{[}x{]}", r"50\%", r"a\_b", r"\textbar{}", r"c \& d", r"\textbackslash{}", r"\$f\$", r"\{g\}", r"\#h",
                    r"\textasciitilde{}i", r"\textasciicircum{}j"):
        assert escaped in tex
    rows = tex_rows(tex)
    header, body = rows[0], rows[2:]  # the group's row, the columns' row, then the entries
    assert len(header) == 3 and all(len(r) == 3 for r in rows)  # no & split an entry
    assert body[0][0] == HOSTILE and body[1][1] == HOSTILE + "†" and body[2][2] == HOSTILE
    assert rf"\texttt{{{render.tex(HOSTILE)}}}" in tex
    assert untex(re.search(r"\\caption\{(.*)\}$", tex, re.MULTILINE).group(1)) == HOSTILE
    # the note: literal % would comment out the rest of the line, literal & would be an alignment error
    assert HOSTILE + r"\par" in untex(tex)


def test_hostile_text_renders_literally_on_the_console():
    text = console_text([hostile_table()])
    assert text.count(HOSTILE) >= 5  # title, header, two entries, note ([bold] is not markup)
    assert f"{HOSTILE}{MARK}" in text


def test_an_nb201_cell_keeps_the_markdown_tables_shape():
    records = [{"row": row, "seed": seed, "arch": arch, "dataset": "digits", "scenario": None, "fraction": None,
                "acc": 0.9, "asr": 0.1} for row, arch in (("evas", NB201), ("resnet18", "resnet18")) for seed in (0, 1)]
    searches = [{"seed": 0, "arch": NB201, "score": 8.3, "visited": 24, "distinct_archs": 23}]
    report = {"evas": evas.evas_table(records, searches)}
    md = render.to_markdown(report)
    tables = md_tables(md)
    assert len(tables) == 2
    for table in tables:
        assert len({len(r) for r in table}) == 1  # every row as wide as the header
    per_arch, search = tables
    assert per_arch[0] == ["dataset", "", "Evas", "ResNet18"]
    assert ["", "cell", NB201, "resnet18"] in per_arch
    assert search[1][-1] == NB201
    tex = render.to_latex(report)
    assert balanced(tex) and all(len(r) == 4 for r in tex_rows(tex)[:5])
    assert NB201 in console_text(report)


def test_the_significance_mark_goes_on_significant_entries_only():
    t = Table("marks", [Column("name", left=True), Column("value")],
              [[Entry("plain"), Entry("1.00")], [Entry("marked"), Entry("2.00", significant=True)]])
    md = "\n".join(render.markdown_table(t))
    assert "| **2.00**" + MARK + " |" in md and md.count(MARK) == 1
    (table,) = md_tables(md)
    assert table[1][1] == "1.00" and table[2][1] == "2.00" + MARK
    tex = "\n".join(render.latex_table(t))
    assert r"\textbf{\underline{2.00}}\textsuperscript{\dag}" in tex
    assert tex.count(r"\textbf") == 1 and tex.count(r"\dag") == 1
    con = Console(record=True, width=200, force_terminal=True, color_system="standard")
    con.print(render.console_table(t))
    styled = con.export_text(styles=True)
    assert "\x1b[1;4m2.00\x1b[0m" + MARK in styled  # bold + underline, then the mark
    assert "\x1b[1;4m1.00" not in styled and styled.count(MARK) == 1


def test_a_report_with_significant_rows_marks_them_in_every_format():
    """The poisoning table's marks come from the rows' tests, the legend's α from the section's corrections."""
    row = {"attack": "gaussian_noise", "budget": 0.5, "algorithm": "a", "n": 3, "mean": 50.0, "std": 1.0,
           "delta_imp": -10.0, "test": {"p": 0.001, "q": 0.002, "significant": True}}
    clean = {"attack": "none", "budget": None, "algorithm": "a", "n": 3, "mean": 60.0, "std": 1.0, "delta_imp": 0.0}
    report = {"algorithms": ["a"], "rows": [clean, row], "baseline": {"n": 3, "mean": 60.0, "std": 1.0},
              "corrections": {"a": {"alpha": 0.01, "n_tests": 1, "untestable": 0}}, "test": "a test"}
    md, tex, con = render.to_markdown(report), render.to_latex(report), console_text(report)
    assert "**50.00 ± 1.00**†" in md and "**-10.00**†" in md and "**60.00" not in md
    assert tex.count(r"\textbf{\underline{") == 2
    assert "50.00 ± 1.00†" in con and "60.00 ± 1.00†" not in con
    assert "α = 0.01" in md and r"$\alpha$ = 0.01" in tex and "α = 0.01" in con
