"""One self-contained HTML page per run or study folder: what ran (config, environment), what the
metrics mean (the definitions of poisonlab.metrics, never restated here), the tables (sortable),
the plots (embedded PNG) and a link to every cell's run folder.

Self-contained because a report is mailed, attached or opened from an archive: the CSS and the
few lines of sorting script are inline, images are data URIs, nothing is fetched. Every piece
of text read from a folder is escaped."""

from __future__ import annotations

import base64
import inspect
import json
import os
import re
from html import escape
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import quote

import yaml

from poisonlab import metrics as metric_module
from poisonlab.io import write_text
from poisonlab.report.folder import Cell, ResultFolder, Table
from poisonlab.report.plots import number
from poisonlab.report.tables import flatten, is_rate

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1250px;
padding:0 24px 48px;color:#222}
h1{margin:20px 0 4px}h2{border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:32px}
nav a{margin-right:14px}.meta{color:#666}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
td{white-space:nowrap}td.differs{white-space:normal}
th{background:#f3f3f3;position:sticky;top:0}
table.sortable th{cursor:pointer}table.sortable th:hover{background:#e4e4e4}
th[data-order=asc]::after{content:" \\25B2"}th[data-order=desc]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafafa}
.scroll{overflow-x:auto}
figure{margin:12px 0 24px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:13px}
pre{background:#f6f6f6;padding:8px 10px;overflow-x:auto;font-size:12px}
dt{font-weight:600;margin-top:6px}dd{margin-left:18px}
.differs{font-size:12px;color:#444}
"""

# Click a header to sort its table; numbers sort as numbers (cells carry their raw value).
SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], i = th.cellIndex;
    var asc = th.dataset.order !== "asc";
    table.querySelectorAll("th").forEach(function (h) { delete h.dataset.order; });
    th.dataset.order = asc ? "asc" : "desc";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[i].dataset.v, y = b.cells[i].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def metric_definitions() -> list[str]:
    """The bullet points of poisonlab.metrics' docstring: every metric, defined once."""
    items: list[str] = []
    for line in (metric_module.__doc__ or "").splitlines():
        if line.startswith("- "):
            items.append(line[2:].strip())
        elif items and line.startswith("  "):
            items[-1] += " " + line.strip()
    return items


def metric_docs(keys: Iterable[str]) -> dict[str, str]:
    """Docstring of each metric function that a key measures (`attack_success_rate_calibrated`
    -> `attack_success_rate`)."""
    functions = {name: inspect.getdoc(fn) or "" for name, fn in
                 inspect.getmembers(metric_module, inspect.isfunction)
                 if fn.__module__ == metric_module.__name__ and not name.startswith("_")}
    found = {}
    for key in keys:
        last = key.rsplit(".", 1)[-1]
        for name, doc in functions.items():
            if doc and (last == name or last.startswith(name + "_")):
                found[name] = " ".join(doc.split())
    return found


def _value_cell(column: str, value: Any) -> str:
    """A <td>: rates in percent, numbers right-aligned; the raw value kept for sorting."""
    if isinstance(value, (dict, list)):
        text = json.dumps(value)
        text = text if len(text) <= 200 else text[:197] + "..."
        return f'<td data-v="{escape(text)}">{escape(text)}</td>'
    raw = "" if value is None else str(value)
    parsed = number(value) if not isinstance(value, bool) else float("nan")
    if parsed == parsed:
        shown = f"{100 * parsed:.1f}" if is_rate(column) else f"{parsed:.6g}"
        return f'<td class="num" data-v="{escape(raw)}">{escape(shown)}</td>'
    return f'<td data-v="{escape(raw)}">{escape(raw)}</td>'


def _tip(key: str, docs: dict[str, str]) -> str:
    """The definition of the metric a column or dotted key measures, for its tooltip."""
    last = key.rsplit(".", 1)[-1]
    return next((d for n, d in docs.items() if last == n or last.startswith(n + "_")), "")


def _header(column: str, docs: dict[str, str]) -> str:
    unit = " (%)" if is_rate(column) else ""
    tip = f"{column}: {_tip(column, docs)}".rstrip(": ")
    return f'<th title="{escape(tip)}">{escape(column.replace("_", " "))}{unit}</th>'


def _link(target: Path, page: Path) -> str:
    return quote(Path(os.path.relpath(target, page.parent)).as_posix()) + "/"


def cell_of(row: dict[str, Any], cells: Sequence[Cell]) -> Cell | None:
    """The cell whose name parts ('cells/psim__sst2-lora', 'sst2/demo-k4') are all values of
    the row (the generic runner's `cells/` folder aside)."""
    values = {str(v) for v in row.values()}
    for cell in cells:
        if set(re.split(r"__|/", cell.name.removeprefix("cells/"))) <= values:
            return cell
    return None


def sortable_table(columns: Sequence[str], rows: Sequence[dict[str, Any]],
                   links: Sequence[str | None] = (), source: str = "") -> str:
    """A table sorted by a click on a column header; `links` are each row's run folder and
    `source` the file the rows come from (kept as data-source)."""
    docs = metric_docs(columns)
    head = "".join(_header(c, docs) for c in columns)
    if any(links):
        head += "<th>run folder</th>"
    body = []
    for i, row in enumerate(rows):
        cells = "".join(_value_cell(c, row.get(c)) for c in columns)
        if any(links):
            href = links[i]
            name = href.rstrip("/").rsplit("/", 1)[-1] if href else ""
            cells += (f'<td data-v="{escape(name)}"><a href="{escape(href)}">{escape(name)}</a>'
                      "</td>" if href else '<td data-v=""></td>')
        body.append(f"<tr>{cells}</tr>")
    return (f'<div class="scroll"><table class="sortable" data-source="{escape(source)}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _table_section(table: Table, result: ResultFolder, page: Path) -> str:
    links = []
    for row in table.rows:
        cell = cell_of(row, result.cells)
        links.append(_link(cell.path, page) if cell else None)
    name = table.path.relative_to(result.path).as_posix()
    return (f"<h3>{escape(table.title)} <small class=meta>({escape(name)}, "
            f"{len(table.rows)} rows)</small></h3>"
            + sortable_table(table.columns, table.rows, links, name))


def _key_values(mapping: dict[str, Any]) -> str:
    """A nested record as a two-column table of dotted keys (rates in percent)."""
    flat = flatten(mapping)
    docs = metric_docs(flat)
    body = "".join(
        f'<tr><td data-v="{escape(key)}" title="{escape(_tip(key, docs))}">{escape(key)}'
        f'{" (%)" if is_rate(key) and _numeric(value) else ""}</td>{_value_cell(key, value)}'
        "</tr>" for key, value in flat.items())
    return ('<div class="scroll"><table class="sortable"><thead><tr><th>key</th><th>value</th>'
            f"</tr></thead><tbody>{body}</tbody></table></div>")


def _numeric(value: Any) -> bool:
    return not isinstance(value, bool) and number(value) == number(value)


def _cells_section(result: ResultFolder, page: Path) -> str:
    rows = []
    for cell in result.cells:
        differs = "; ".join(f"{k}={v}" for k, v in cell.differs.items())
        rows.append(f'<tr><td data-v="{escape(cell.name)}"><a href="{_link(cell.path, page)}">'
                    f"{escape(cell.name)}</a></td>"
                    f'<td data-v="{"finished" if cell.finished else "unfinished"}">'
                    f'{"finished" if cell.finished else "unfinished"}</td>'
                    f'<td class="differs" data-v="{escape(differs)}">{escape(differs)}</td></tr>')
    return ('<p>Each cell is a run folder of its own; the config keys in which it differs from '
            'the shared config are listed beside it.</p><div class="scroll">'
            '<table class="sortable"><thead><tr><th>cell</th><th>status</th>'
            f"<th>differs in</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _definitions_section(keys: Iterable[str]) -> str:
    items = "".join(f"<li>{escape(item)}</li>" for item in metric_definitions())
    docs = "".join(f"<dt>{escape(name)}</dt><dd>{escape(doc)}</dd>"
                   for name, doc in metric_docs(keys).items())
    return (f"<p>From <code>poisonlab/metrics.py</code> (definitions version "
            f"{escape(metric_module.DEFINITIONS_VERSION)}). Values shown as (%) are shares "
            f"in percent.</p><ul>{items}</ul>" + (f"<dl>{docs}</dl>" if docs else ""))


def _all_keys(result: ResultFolder) -> list[str]:
    keys = [c for t in result.tables for c in t.columns]
    for record in result.records.values():
        keys += list(flatten(record))
    return keys


def render(result: ResultFolder, page: Path) -> str:
    """The page of `result`, with links relative to where the page will be written."""
    sections: list[tuple[str, str, str]] = []  # (anchor, heading, html)
    if result.description:
        sections.append(("about", "About", f"<p>{escape(result.description)}</p>"))
    metrics = result.records.get("metrics.json")
    if metrics is not None:
        sections.append(("metrics", "Metrics (metrics.json)", _key_values(metrics)))
    if result.plots:
        sections.append(("plots", "Plots", "".join(
            f'<figure><img alt="{escape(p.title)}" src="data:image/png;base64,'
            f'{base64.b64encode(p.png).decode("ascii")}"><figcaption>{escape(p.title)}'
            "</figcaption></figure>" for p in result.plots)))
    if result.tables:
        sections.append(("tables", "Tables", "".join(
            _table_section(t, result, page) for t in result.tables)))
    if result.cells:
        sections.append(("cells", f"Cells ({len(result.cells)})", _cells_section(result, page)))
    sections.append(("definitions", "Metric definitions", _definitions_section(_all_keys(result))))
    config = yaml.safe_dump(result.config, sort_keys=False) if result.config else ""
    sections.append(("config", "Config", (
        f"<p>From {escape(result.config_source)}.</p><pre>{escape(config)}</pre>")
        if config else "<p>No config recorded in this folder.</p>"))
    sections.append(("environment", "Environment", _key_values(result.environment)
                     if result.environment else "<p>No environment.json in this folder.</p>"))
    others = {k: v for k, v in result.records.items() if k != "metrics.json"}
    if others:
        sections.append(("records", "Records", "".join(
            f"<h3>{escape(name)}</h3>{_key_values(record)}" for name, record in others.items())))
    if result.log_tail:
        sections.append(("log", "Log (last lines of log.txt)",
                         f"<pre>{escape(result.log_tail)}</pre>"))
    nav = "".join(f'<a href="#{a}">{escape(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<h2 id="{a}">{escape(h)}</h2>{html}' for a, h, html in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(result.title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{escape(result.title)}</h1><p class=meta>poisonlab {escape(result.kind)} "
            f"folder <code>{escape(str(result.path))}</code></p><nav>{nav}</nav>{body}"
            f"<script>{SORT_SCRIPT}</script></body></html>\n")


def write_html_report(result: ResultFolder, output: str | Path | None = None) -> Path:
    """Write the report of a folder read by `folder.read_folder` (default
    `<folder>/report.html`)."""
    page = Path(output) if output else result.path / "report.html"
    return write_text(page, render(result, page))
