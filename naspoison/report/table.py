"""The one table model every report section produces and every format renders (render.py).

A section turns its data (the JSON-able dict in report.json) into :class:`Table` s of plain text; it
never writes Markdown, LaTeX or console markup itself, so the formats cannot drift apart and each
format escapes text in one place. "Entry" (not "cell"): in this project a cell is a pipeline step
or a NAS architecture cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    text: str
    significant: bool = False  # rendered bold + underline with stats.MARK after it
    code: bool = False         # an identifier (an architecture string): monospace


@dataclass(frozen=True)
class Column:
    name: str
    group: str = ""            # adjacent columns of one group share a header above them (an algorithm)
    left: bool = False         # text columns align left, numbers right


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[list[Entry]]
    notes: list[str] = field(default_factory=list)
    group_name: str = ""       # what the column groups are ("algorithm"): the long layout's column for them
    label: str = ""            # LaTeX \label (tab:<label>); empty: none
    ruled: bool = False        # a rule above each row whose first entry is not empty (the long layout's blocks)

    def __post_init__(self):
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.title!r}: a row has {len(row)} entries for {len(self.columns)} columns")

    def long(self) -> Table:
        """The grouped columns folded into rows: one row per (row, group) with the group's name in a column
        of its own, for a narrow terminal. Groups whose entries are all "-" (nothing there) are left out."""
        lead = [c for c in self.columns if not c.group]
        groups = list(dict.fromkeys(c.group for c in self.columns if c.group))
        sub = [Column(c.name, left=c.left) for c in self.columns if c.group == groups[0]] if groups else []
        if not groups or any([c.name for c in self.columns if c.group == g] != [c.name for c in sub] for g in groups):
            return self  # nothing to fold, or groups of different columns (which one row could not hold)
        rows = []
        for row in self.rows:
            first = True
            for g in groups:
                mine = [e for c, e in zip(self.columns, row) if c.group == g]
                if all(e.text == "-" for e in mine):
                    continue
                head = [e for c, e in zip(self.columns, row) if not c.group] if first else [Entry("")] * len(lead)
                rows.append([*head, Entry(g), *mine])
                first = False
        return Table(self.title, [*lead, Column(self.group_name or "group", left=True), *sub], rows, self.notes,
                     label=self.label, ruled=True)


def pm(d: dict | None, nd: int = 2, unit: str = "") -> str:
    """``{"mean", "std"}`` as "mean ± std"; "-" for none."""
    if not d or d.get("mean") is None:
        return "-"
    return f"{d['mean']:.{nd}f} ± {d['std']:.{nd}f}{unit}" if d.get("std") is not None else f"{d['mean']:.{nd}f}{unit}"
