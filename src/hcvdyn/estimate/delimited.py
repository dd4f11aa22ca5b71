"""Delimited text tables as spreadsheets, NONMEM and Monolix write them, read into a header and numbered rows.

* **Encoding**: UTF-8, with or without the byte-order mark that spreadsheet exports put first; UTF-16 when the file
  starts with its byte-order mark (a spreadsheet's "Unicode text"). Line ends ``\\n``, ``\\r\\n`` or ``\\r``.
* **Comments**: lines whose first non-blank character is ``#`` (provenance before the header; NONMEM's
  ``IGNORE=#``) are skipped wherever they are, as are blank lines and rows of empty cells.
* **Delimiter**, read from the header line: a comma if it has one, else a tab if it has one, else runs of
  whitespace (NONMEM's and Monolix's tables; spaces and tabs alike, and ``.`` for an empty cell). A data line
  written with another delimiter, or with more or fewer fields than the header, is refused with its file and line.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Table", "Row", "read_table", "MISSING"]

MISSING = ("", ".")  # an empty cell, as written by spreadsheets and by NONMEM


@dataclass(frozen=True)
class Row:
    """One data line: its cells by lower-case column name (stripped; ``.`` read as empty)."""

    path: str
    line: int
    cells: dict[str, str]

    def __getitem__(self, name: str) -> str:
        text = self.cells.get(name, "")
        return "" if text in MISSING else text

    def at(self, name: str) -> str:
        """``FILE:LINE: column NAME``, the prefix of every message about one cell."""
        return f"{self.path}:{self.line}: column {name}"


@dataclass(frozen=True)
class Table:
    """A delimited file: its column names (lower-case, stripped) and its data rows, blank and comment lines left out."""

    path: str
    delimiter: str  # "comma", "tab" or "whitespace"
    header_line: int
    header: tuple[str, ...]
    rows: tuple[Row, ...]

    def column(self, name: str) -> list[tuple[int, str]]:
        """(line, cell) of every row where column ``name`` is not empty."""
        return [(r.line, r[name]) for r in self.rows if r[name]]


def _decode(raw: bytes, path: str) -> str:
    encoding = "utf-16" if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].decode(encoding, errors="replace").count("\n") + 1
        raise ValueError(f"{path}:{line}: not {encoding.removesuffix('-sig').upper()} text (byte {raw[e.start]:#04x}); "
                         "save the file as UTF-8 (CSV UTF-8 in a spreadsheet)") from None


def _delimiter_of(line: str) -> str | None:
    """The delimiter a line reads as on its own (None: a single field)."""
    if "," in line:
        return "comma"
    if "\t" in line:
        return "tab"
    return "whitespace" if len(line.split()) > 1 else None


def _fits(line: str, delimiter: str) -> bool:
    """Whether a data line can be written with the header's delimiter."""
    if delimiter == "whitespace":
        return "," not in line
    return ("," if delimiter == "comma" else "\t") in line or _delimiter_of(line) is None


def _split(line: str, delimiter: str, where: str) -> list[str]:
    if delimiter == "whitespace":
        return line.split()
    try:
        return next(csv.reader([line], delimiter="," if delimiter == "comma" else "\t"))
    except csv.Error as e:
        raise ValueError(f"{where}: {e}") from None


def read_table(path: str | Path) -> Table:
    """The header and data rows of a delimited text file (module docstring); ValueError names the file and line."""
    where = str(path)
    text = _decode(Path(path).read_bytes(), where).replace("\ufeff", "")  # a mark left inside by joined exports too
    lines = re.split(r"\r\n|\r|\n", text)
    body = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]
    if not body:
        raise ValueError(f"{where}: empty file")
    (header_line, head), body = body[0], body[1:]
    delimiter = _delimiter_of(head) or "comma"
    header = tuple(h.strip().lower() for h in _split(head, delimiter, f"{where}:{header_line}"))
    named = [h for h in header if h]
    if twice := sorted({h for h in named if named.count(h) > 1}):
        raise ValueError(f"{where}:{header_line}: column {twice[0]} appears twice in the header")
    rows = []
    for lineno, line in body:
        if not _fits(line, delimiter):
            raise ValueError(f"{where}:{lineno}: fields separated by {_delimiter_of(line)}, but the header "
                             f"(line {header_line}) by {delimiter}: one delimiter per file")
        cells = [c.strip() for c in _split(line, delimiter, f"{where}:{lineno}")]
        if not any(cells):
            continue  # a spreadsheet's empty row (,,,)
        if len(cells) != len(header):
            hint = " (whitespace-delimited: write . for an empty cell)" if delimiter == "whitespace" else ""
            raise ValueError(f"{where}:{lineno}: {len(cells)} fields, header has {len(header)}{hint}")
        rows.append(Row(where, lineno, {h: c for h, c in zip(header, cells) if h}))
    return Table(where, delimiter, header_line, header, tuple(rows))
