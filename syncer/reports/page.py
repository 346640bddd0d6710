"""The frame of a report page: its inline style and script (sort on a header click, filter
as you type), the Content-Security-Policy that runs only that script, and the escaped table
and figure blocks every page is written with."""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, Final

from syncer.core.offers import visible

if TYPE_CHECKING:
    pass



# --- the page around it ------------------------------------------------------------------------

STYLE: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2327}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#666;margin:0}.lead{font-size:15px}.stop{background:#fdecea;padding:8px;
border-left:4px solid #c0392b}.note{color:#555;font-style:italic}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;vertical-align:top;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f5f7;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
tr:nth-child(even) td{background:#fafbfc}
del{color:#c0392b}ins{color:#1e7e34;text-decoration:none}.f{color:#666}.err{color:#c0392b}
.q{color:#8a6d00}.charts{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;border:1px solid #e3e3e3;padding:8px}figcaption{font-weight:600}
svg text{font-size:11px;fill:#333}svg text.small{font-size:9px}svg .grid{stroke:#eee}
.filter{margin:4px 0}.filter input{padding:3px 6px;width:260px}.count{color:#666;margin-left:8px}
"""

SCRIPT: Final = """
(function () {
  function key(cell, numeric) {
    var v = cell.getAttribute('data-sort');
    if (v === null) { v = cell.textContent; }
    if (numeric) { var f = parseFloat(v); return isNaN(f) ? -Infinity : f; }
    return v.toLowerCase();
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, column) {
      th.addEventListener('click', function () {
        var numeric = th.getAttribute('data-type') === 'num';
        var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
        Array.prototype.forEach.call(heads, function (o) { o.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[column], numeric), y = key(b.cells[column], numeric);
          return x < y ? -dir : (x > y ? dir : 0);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('input[data-filter]'), function (box) {
    var table = document.getElementById(box.getAttribute('data-filter'));
    var count = document.querySelector('[data-count="' + table.id + '"]');
    box.addEventListener('input', function () {
      var query = box.value.toLowerCase(), shown = 0, rows = table.tBodies[0].rows;
      Array.prototype.forEach.call(rows, function (row) {
        var keep = row.textContent.toLowerCase().indexOf(query) !== -1;
        row.hidden = !keep;
        if (keep) { shown += 1; }
      });
      count.textContent = shown + ' of ' + rows.length + ' rows';
    });
  });
})();
"""

_SCRIPT_HASH: Final = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
# Only this page's own script runs, and nothing is loaded from anywhere.
CSP: Final = (f"default-src 'none'; style-src 'unsafe-inline'; "
              f"script-src 'sha256-{_SCRIPT_HASH}'; img-src data:; base-uri 'none'; "
              "form-action 'none'")


def head(title: str) -> Iterator[str]:
    yield ("<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
           '<meta name=viewport content="width=device-width, initial-scale=1">\n'
           f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
           f"<h1>{escape(title)}</h1>\n")


def foot() -> Iterator[str]:
    yield f"<script>{SCRIPT}</script>\n</body>\n</html>\n"


def figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}</figure>\n"


def table(table_id: str, header: Sequence[str], rows: Iterable[Sequence[Any]], *,
           numeric: AbstractSet[int] = frozenset(), raw: AbstractSet[int] = frozenset(),
           filter_box: bool = True) -> Iterator[str]:
    """A sortable table. A cell is a value (escaped), or (shown, sort key); ``raw`` columns
    hold HTML built here from escaped parts."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        yield "<p>None.</p>\n"
        return
    if filter_box:
        yield (f'<div class=filter><input type=search data-filter="{table_id}" '
               f'placeholder="Filter these rows…" aria-label="filter {table_id}">'
               f'<span class=count data-count="{table_id}"></span></div>\n')
    heads = "".join(f'<th{" data-type=num" if i in numeric else ""}>{escape(h)}</th>'
                    for i, h in enumerate(header))
    yield f'<table id="{table_id}" class=sortable>\n<thead><tr>{heads}</tr></thead>\n<tbody>\n'
    count = 0
    for row in _chain(first, rows):
        cells = []
        for i, cell in enumerate(row):
            sort = None
            if isinstance(cell, tuple):
                cell, sort = cell
            shown = str(cell) if i in raw else escape("" if cell is None else str(cell))
            attrs = ' class=n' if i in numeric else ""
            if sort is not None:
                attrs += f' data-sort="{escape(str(sort))}"'
            cells.append(f"<td{attrs}>{shown}</td>")
        yield "<tr>" + "".join(cells) + "</tr>\n"
        count += 1
    yield f"</tbody>\n</table>\n<p class=count>{count} row{'s' if count != 1 else ''}</p>\n"


def _chain(first: Sequence[Any], rest: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
    yield first
    yield from rest


def escape(text: str) -> str:
    """Any text for the page: invisible characters shown, then escaped (also in quotes)."""
    return html.escape(visible(text), quote=True)
