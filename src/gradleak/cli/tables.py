"""Terminal tables that never cut a value: they wrap, or switch to one block per row.

A table is printed as a grid when every column fits at its longest word; cells then wrap at
word boundaries (and fold inside a word only if it is longer than its column). When even
that does not fit the terminal, each row is printed as ``column  value`` lines instead, so
``noise:sigma=0.001`` is never shortened to ``noise:sigma=0.0…``.

Example:
    >>> import io
    >>> from rich.console import Console
    >>> console = Console(width=30, record=True, file=io.StringIO())
    >>> show_table("t", ["name", "value"], [["a", "noise:sigma=0.001"]], console=console)
    >>> "noise:sigma=0.001" in console.export_text()
    True
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

BORDER = 3
"""Cells of border and padding per column in a rich table."""


def _longest_word(text: str) -> int:
    return max((cell_len(w) for w in text.split()), default=0)


def fits_as_grid(columns: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> bool:
    """Whether a grid with every column at least as wide as its longest word fits ``width`` cells.

    Example:
        >>> fits_as_grid(["a", "b"], [["x y", "zz"]], 20), fits_as_grid(["a"], [["a" * 30]], 20)
        (True, False)
    """
    needed = 1
    for i, column in enumerate(columns):
        needed += max([_longest_word(column)] + [_longest_word(str(r[i])) for r in rows]) + BORDER
    return needed <= width


def show_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], *,
               console: Console | None = None, right: Sequence[str] = (), vertical: bool | None = None,
               caption: str | None = None) -> None:
    """Print ``rows`` under ``columns``: a wrapping grid, or one block per row when it cannot fit.

    Args:
        title: printed above.
        columns: column headers.
        rows: cell texts, one list per row.
        console: where to print (default: stdout).
        right: columns to right-align in the grid (numbers).
        vertical: force the block layout (``True``) or the grid (``False``); default: by width.
        caption: printed below.
    """
    console = console or Console()
    rows = [[str(c) for c in r] for r in rows]
    if vertical is None:
        vertical = not fits_as_grid(columns, rows, console.width)
    if not vertical:
        table = Table(title=title, caption=caption)
        for column in columns:
            table.add_column(column, overflow="fold", justify="right" if column in right else "left")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    console.print(Text(title, style="bold"))
    key_width = max(cell_len(c) for c in columns)
    for n, row in enumerate(rows):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", width=key_width, no_wrap=True)
        grid.add_column(overflow="fold")
        for column, cell in zip(columns, row):
            grid.add_row(column, Text(cell))
        if n:
            console.print()
        console.print(grid)
    if caption:
        console.print(Text(caption, style="dim"))
