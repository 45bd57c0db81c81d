"""Tables for people and for pipes, shared by the CLI and the demo."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table


def emit(table: Table, console: Console) -> None:
    """A boxed table on a terminal; piped, plain lines as wide as their content
    (rich would otherwise squeeze them into 80 columns and cut the cells)."""
    if console.is_terminal:
        table.box, table.pad_edge = box.SIMPLE_HEAD, False  # no rules between columns
        for column in table.columns:  # too narrow: wrap the cells, never cut an id
            column.overflow = "fold"
        console.print(table)
        return
    table.box, table.pad_edge, table.show_edge = None, False, False
    table.title_justify = "left"
    wide = Console(width=1_000_000, color_system=None, highlight=False, markup=False)
    with wide.capture() as captured:
        wide.print(table)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    console.file.write(text.strip("\n") + "\n")
    console.file.flush()
