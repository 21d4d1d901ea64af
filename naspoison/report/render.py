"""Every report format from one list of tables: each section module turns its part of report.json into
:class:`~naspoison.report.table.Table` s (each family's ``tables``), and one renderer per format writes them, with
one escaping function per format (``md``, ``tex``; the console takes rich ``Text``, which is never
parsed as markup).

Marks: a significant entry is bold + underlined with ``stats.MARK`` after it (``**…**†`` in Markdown);
CSV has a ``significant`` column. CSV and JSON are the data (CSV: the poisoning rows), not the tables.
"""
from __future__ import annotations

import csv
import io
import json
import re

from naspoison.families import FAMILIES
from naspoison.report.stats import MARK
from naspoison.report.table import Entry, Table


def tables(report: dict) -> list[Table]:
    """Every family's tables of ``report``, in the families' order (``Family.tables``)."""
    return [t for fam in FAMILIES.values() for t in fam.tables(report)]


# ----------------------------------------------------------------------------- data formats
def to_json(report: dict) -> str:
    return json.dumps(report, indent=1, sort_keys=True, allow_nan=False) + "\n"


def to_csv(report: dict) -> str:
    """The poisoning rows (the other sections are in the JSON, Markdown and LaTeX reports)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["attack", "budget", "algorithm", "n", "acc_mean", "acc_std", "delta_imp", "t", "df", "p", "q",
                "significant", "untestable", "diff", "ci_low", "ci_high", "hedges_g"])
    for r in report.get("rows", []):
        t, e = r.get("test", {}), r.get("effect", {})
        w.writerow([r["attack"], "" if r["budget"] is None else r["budget"], r["algorithm"], r["n"], r["mean"],
                    r["std"], r["delta_imp"], t.get("t"), t.get("df"), t.get("p"), t.get("q"),
                    t.get("significant", ""), t.get("untestable") or "", e.get("diff"), e.get("ci_low"),
                    e.get("ci_high"), e.get("hedges_g")])
    return buf.getvalue()


def _header(c) -> str:
    return f"{c.group} {c.name}" if c.group else c.name


# ----------------------------------------------------------------------------- Markdown
_MD_ANYWHERE = re.compile(r"([\\`*|\[\]<~&$])")  # code, emphasis, table, links, html, strikethrough, math
_MD_WORD_EDGE = re.compile(r"(?<!\w)_|_(?!\w)")     # emphasis; "a_b" inside a word is plain text
_MD_LEADING = re.compile(r"^(>|[-+]|#+|\d+[.)])(?=\s)")  # a quote, list or heading at a line's start
_MD_TRAILING = re.compile(r"(#+)$")                 # a heading's closing sequence


def md(s: str) -> str:
    """Text as Markdown (GFM) that shows it literally, inside a table entry, a heading or a list item."""
    s = " ".join(s.split())
    s = _MD_WORD_EDGE.sub(r"\\_", _MD_ANYWHERE.sub(r"\\\1", s))
    s = _MD_LEADING.sub(lambda m: re.sub(r"([^\d])$", r"\\\1", m.group(1)) if m.group(1)[0].isdigit()
                        else "\\" + m.group(1), s)
    return _MD_TRAILING.sub(lambda m: "\\" + "\\".join(m.group(1)), s)


def _md_entry(e: Entry) -> str:
    # in a code span only the table's | needs its escape (GFM strips it before reading the span)
    text = f"`{' '.join(e.text.split()).replace('|', chr(92) + '|')}`" if e.code and "`" not in e.text else md(e.text)
    return f"**{text}**{MARK}" if e.significant and e.text else text


def markdown_table(t: Table) -> list[str]:
    out = [f"## {md(t.title)}", ""]
    if t.columns:
        out += ["| " + " | ".join(md(_header(c)) for c in t.columns) + " |", "|" + "---|" * len(t.columns)]
        out += ["| " + " | ".join(_md_entry(e) for e in row) + " |" for row in t.rows]
        out.append("")
    return out + [f"- {md(n)}" for n in t.notes] + ([""] if t.notes else [])


def to_markdown(report: dict) -> str:
    return "\n".join(line for t in tables(report) for line in markdown_table(t)).rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- LaTeX
_TEX = str.maketrans({
    "\\": r"\textbackslash{}", "%": r"\%", "&": r"\&", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "|": r"\textbar{}", "<": r"\textless{}",
    ">": r"\textgreater{}", "\n": " ",
    # braced so that an entry starting a row is not read as the preceding \\'s [length] or * argument
    "[": "{[}", "]": "{]}", "*": "{*}",
    # the symbols the tables use, so that the fragment compiles under pdflatex as well
    "±": r"$\pm$", "−": r"$-$", "Δ": r"$\Delta$", "κ": r"$\kappa$", "ρ": r"$\rho$", "α": r"$\alpha$",
    "∞": r"$\infty$", "·": r"$\cdot$", "×": r"$\times$", "≤": r"$\le$", "≥": r"$\ge$", "†": r"\dag{}",
    "–": "--", "—": "---",
})


def tex(s: str) -> str:
    """Text as LaTeX that typesets it literally."""
    return s.translate(_TEX)


def _tex_entry(e: Entry) -> str:
    text = rf"\texttt{{{tex(e.text)}}}" if e.code else tex(e.text)
    return rf"\textbf{{\underline{{{text}}}}}\textsuperscript{{\dag}}" if e.significant and e.text else text


def _label(t: Table) -> str:
    return "tab:" + (t.label or re.sub(r"[^a-z0-9]+", "-", t.title.lower()).strip("-"))


def latex_table(t: Table) -> list[str]:
    """A table float (booktabs) with the notes under the tabular."""
    out = [r"\begin{table}[htbp]", r"\centering", rf"\caption{{{tex(t.title)}}}", rf"\label{{{_label(t)}}}"]
    if t.columns:
        out += [r"\begin{tabular}{" + "".join("l" if c.left else "r" for c in t.columns) + "}", r"\toprule"]
        if any(c.group for c in t.columns):
            top, rules, i = [], [], 0
            while i < len(t.columns):
                c = t.columns[i]
                if not c.group:
                    top.append(tex(c.name))
                    i += 1
                    continue
                n = next((j for j in range(i, len(t.columns)) if t.columns[j].group != c.group), len(t.columns)) - i
                top.append(rf"\multicolumn{{{n}}}{{c}}{{{tex(c.group)}}}")
                rules.append(rf"\cmidrule(lr){{{i + 1}-{i + n}}}")
                i += n
            out += [" & ".join(top) + r" \\", " ".join(rules),
                    " & ".join(tex(c.name) if c.group else "" for c in t.columns) + r" \\"]
        else:
            out.append(" & ".join(tex(c.name) for c in t.columns) + r" \\")
        out.append(r"\midrule")
        out += [" & ".join(_tex_entry(e) for e in row) + r" \\" for row in t.rows]
        out += [r"\bottomrule", r"\end{tabular}"]
    if t.notes:
        out += [r"\par\smallskip\footnotesize"] + [tex(n) + r"\par" for n in t.notes]
    return out + [r"\end{table}", ""]


def to_latex(report: dict) -> str:
    """A fragment to \\input (needs booktabs)."""
    return "\n".join(line for t in tables(report) for line in latex_table(t)).rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- console
def _text(e: Entry):
    from rich.text import Text

    if e.significant and e.text:
        return Text.assemble((e.text, "bold underline"), MARK)
    return Text(e.text)


def console_table(t: Table):
    """A rich table. Every string goes in as ``Text``, which rich never parses as markup: no escaping."""
    from rich.table import Table as RichTable
    from rich.text import Text

    if not t.columns:  # rich draws nothing at all for a table without columns, caption included
        from rich.console import Group

        return Group(Text(t.title, style="italic", justify="center"), *(Text(n) for n in t.notes))
    out = RichTable(title=Text(t.title), caption=Text("\n".join(t.notes)) if t.notes else None,
                    caption_justify="left", show_header=bool(t.columns))
    for c in t.columns:
        out.add_column(Text(f"{c.group}\n{c.name}" if c.group else c.name), justify="left" if c.left else "right",
                       overflow="fold")  # an architecture string has no space to wrap at: fold, never cut
    for i, row in enumerate(t.rows):
        last = i + 1 == len(t.rows) or (t.ruled and bool(t.rows[i + 1][0].text))
        out.add_row(*(_text(e) for e in row), end_section=t.ruled and last)
    return out


class _Fitted:
    """A table in its wide layout where the terminal is wide enough for it, else folded (``Table.long``)."""

    def __init__(self, t: Table):
        self.wide, self.long = console_table(t), console_table(t.long())

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement

        return Measurement.get(console, options, self.long)

    def __rich_console__(self, console, options):
        from rich.measure import Measurement

        natural = Measurement.get(console, options.update_width(10**6), self.wide).maximum
        yield self.wide if natural <= options.max_width else self.long


def to_console(report: dict, compact: bool = False):
    """Each table wide where the terminal fits it, else with its grouped columns folded into rows (the
    poisoning table one row per (attack, budget, algorithm)); ``compact``: folded everywhere."""
    from rich.console import Group

    return Group(*(console_table(t.long()) if compact else _Fitted(t) for t in tables(report)))


FORMATS = {"json": to_json, "csv": to_csv, "md": to_markdown, "tex": to_latex}
