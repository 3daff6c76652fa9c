"""A small table for notebooks, scripts and reports (pandas is not a dependency). ROS-free.

A :class:`Table` holds column names and rows of plain values. In a notebook it renders as HTML
(and markdown); ``str()`` gives aligned text, :meth:`Table.to_markdown` a GitHub table, and
:meth:`Table.records` the rows as dicts.

Example:
    >>> t = Table(['action', 'count'], [['0: action=0', 12], ['1: action=1', 30]], title='actions')
    >>> print(t.to_markdown())
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def format_value(value: Any) -> str:
    """Numbers compactly (floats with 4 significant digits, NaN as '-'), anything else as str."""
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, float) or type(value).__name__.startswith('float'):
        v = float(value)
        if math.isnan(v):
            return '-'
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f'{v:.3e}'
        return f'{v:.4g}'
    return str(value)


@dataclass
class Table:
    """Columns and rows of plain values.

    Attributes:
        columns: column names.
        rows: one list per row, a value per column.
        title: shown above the table.
        notes: lines shown below it (e.g. which sessions were left out and why).
    """

    columns: list[str]
    rows: list[list[Any]]
    title: str = ''
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.columns = [str(c) for c in self.columns]
        self.rows = [list(r) for r in self.rows]
        bad = [i for i, r in enumerate(self.rows) if len(r) != len(self.columns)]
        if bad:
            raise ValueError(f'rows {bad} do not have {len(self.columns)} values ({self.columns})')

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[Any]:
        """The values of one column.

        Raises:
            KeyError: no such column.
        """
        if name not in self.columns:
            raise KeyError(f'no column {name!r}; columns: {self.columns}')
        k = self.columns.index(name)
        return [r[k] for r in self.rows]

    def records(self) -> list[dict[str, Any]]:
        """The rows as {column: value} dicts."""
        return [dict(zip(self.columns, r)) for r in self.rows]

    def _cells(self) -> list[list[str]]:
        return [[format_value(v) for v in r] for r in self.rows]

    def to_markdown(self) -> str:
        """A GitHub-flavoured markdown table (title in bold above, notes below)."""

        def esc(text: str) -> str:
            return text.replace('|', '\\|').replace('\n', ' ')

        lines = [f'**{esc(self.title)}**', ''] if self.title else []
        lines.append('| ' + ' | '.join(esc(c) for c in self.columns) + ' |')
        lines.append('|' + '|'.join('---' for _ in self.columns) + '|')
        lines += ['| ' + ' | '.join(esc(c) for c in r) + ' |' for r in self._cells()]
        if self.notes:
            lines += [''] + [f'- {esc(n)}' for n in self.notes]
        return '\n'.join(lines)

    def __str__(self) -> str:
        cells = self._cells()
        widths = [max([len(c)] + [len(r[k]) for r in cells]) for k, c in enumerate(self.columns)]
        out = [self.title] if self.title else []
        out.append('  '.join(c.ljust(w) for c, w in zip(self.columns, widths)).rstrip())
        out.append('  '.join('-' * w for w in widths))
        out += ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
        out += self.notes
        return '\n'.join(out)

    def _repr_html_(self) -> str:
        head = ''.join(f'<th>{html.escape(c)}</th>' for c in self.columns)
        body = ''.join(
            '<tr>' + ''.join(f'<td>{html.escape(c)}</td>' for c in r) + '</tr>'
            for r in self._cells()
        )
        title = f'<p><b>{html.escape(self.title)}</b></p>' if self.title else ''
        notes = ''.join(f'<br><small>{html.escape(n)}</small>' for n in self.notes)
        return (
            f'{title}<table class="devbot-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table>{notes}'
        )

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]], title: str = '') -> 'Table':
        """From dicts (columns in first-seen key order; a missing value is None)."""
        columns: list[str] = []
        for r in records:
            columns += [k for k in r if k not in columns]
        return cls(columns, [[r.get(c) for c in columns] for r in records], title)


__all__ = ['Table', 'format_value']
