"""`poisonlab report`: a self-contained HTML page of a study or run folder. A tiny data-poisoning
study and a detection study on its cells (tiny-bert, synthetic data) are reported, and each page
is parsed: images decode as PNG, tables hold the rows of their CSV, links reach existing folders,
nothing is fetched from the network, and text from the folder is escaped."""

from __future__ import annotations

import base64
import csv
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from poisonlab.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert('x')</script> & co"


class Page(HTMLParser):
    """The images, links, scripts and tables (rows of cell texts) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.sources: list[str] = []          # every src/href attribute
        self.tables: dict[str, list[list[str]]] = {}
        self.script_blocks = 0
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.sources += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "img":
            self.images.append(values["src"] or "")
        elif tag == "a" and not (values.get("href") or "").startswith("#"):
            self.links.append(values["href"] or "")
        elif tag == "script":
            self.script_blocks += 1
        elif tag == "table" and values.get("data-source"):
            self._table = self.tables.setdefault(values["data-source"] or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag == "td" and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._table is not None and self._cell is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(page: Path) -> Page:
    parsed = Page()
    parsed.feed(page.read_text(encoding="utf-8"))
    return parsed


def check_page(page: Path, folder: Path) -> Page:
    """The checks every report must pass."""
    parsed = parse(page)
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,"), src[:40]
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    for link in parsed.links:
        assert (page.parent / unquote(link)).is_dir(), link
    assert not [s for s in parsed.sources if s.startswith(("http://", "https://", "//"))]
    assert parsed.script_blocks == 1
    for csv_path in [*folder.glob("*.csv"), *folder.glob("report/*.csv")]:
        source = csv_path.relative_to(folder).as_posix()
        with csv_path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        shown = [r for r in parsed.tables[source] if r]  # the header row has no <td>
        assert len(shown) == len(rows), source
        assert [r[0] for r in shown] == [r[0] for r in rows]
    return parsed


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two finished cells (clean and BadNet) and a STRIP detection cell on the BadNet one."""
    from synthetic import synthetic_splits, write_jsonl_split
    root = tmp_path_factory.mktemp("report")
    data = write_jsonl_split(root / "synthetic", synthetic_splits(n_train=96, n_test=40))
    victims = root / "victims.yaml"
    victims.write_text(yaml.safe_dump({
        "name": "tiny-victims", "output_dir": str(root / "out"), "description": HOSTILE,
        "base": {"data": {"name": str(data)}, "model": {"name": "tiny-bert"},
                 "training": {"epochs": 1, "max_length": 16}},
        "axes": {"attack": {
            "clean": {"attack": {"name": "badnet", "target_label": 1},
                      "poison_training": False},
            "badnet": {"attack": {"name": "badnet", "target_label": 1, "poison_rate": 0.2}}},
            "tuning": {"full": {"tuning": {"name": "full"}}}}}))
    detection = root / "detect.yaml"
    detection.write_text(yaml.safe_dump({
        "name": "tiny-detect", "pipeline": "detection", "output_dir": str(root / "out"),
        "base": {"data": {"test_size": 20}},
        "axes": {"defense": {"strip": {"defense": {"name": "strip", "copies": 2}}},
                 "victim": {"badnet": {"victim": {"study": str(victims),
                                                  "cell": "badnet__full"}}}},
        "columns": ["clean_accuracy", "attack_success_rate", "auroc"]}))
    assert main(["study", str(victims), "--quiet"]) == 0
    assert main(["study", str(detection), "--quiet"]) == 0
    assert main(["defense-table", str(detection)]) == 0
    return root


def test_a_study_report_shows_tables_plots_and_links_every_cell(studies, capsys):
    victims = studies / "out" / "tiny-victims"
    assert main(["report", str(studies / "victims.yaml")]) == 0
    page = victims / "report.html"
    parsed = check_page(page, victims)
    assert len(parsed.images) == 1  # the ASR/CA plot, redrawn from table.csv
    assert {unquote(link).rstrip("/") for link in parsed.links} >= {"cells/clean__full",
                                                                    "cells/badnet__full"}
    assert all(row[-1].endswith("__full") for row in parsed.tables["table.csv"] if row)
    text = page.read_text(encoding="utf-8")
    assert HOSTILE not in text and "&lt;script&gt;alert(" in text
    assert "Share of triggered non-target examples" in text  # attack_success_rate's docstring


def test_a_detection_study_report_links_its_cells_and_has_the_baseline(studies, tmp_path):
    folder = studies / "out" / "tiny-detect"
    page = tmp_path / "elsewhere" / "detect.html"
    assert main(["report", str(folder), "--output", str(page)]) == 0
    parsed = check_page(page, folder)
    table = parsed.tables["table.csv"]
    assert [r[1] for r in table if r][0] == "none"  # no defense first: the baseline row
    assert any(unquote(link).endswith("cells/strip__badnet/") for link in parsed.links)


def test_run_folders_of_each_kind_have_a_report(studies, tmp_path):
    """A training run (its log and metrics) and a detection result (its score histogram)."""
    for folder in (studies / "out" / "tiny-victims" / "cells" / "badnet__full",
                   studies / "out" / "tiny-detect" / "cells" / "strip__badnet"):
        page = tmp_path / f"{folder.name}.html"
        assert main(["report", str(folder), "-o", str(page)]) == 0
        parsed = check_page(page, folder)
        text = page.read_text(encoding="utf-8")
        assert "environment" in text.lower() and "config.yaml" in text
    assert len(parsed.images) == 1  # the detection result's histogram from scores.jsonl


def test_a_folder_with_nothing_to_report_is_one_line_naming_it(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing" / "folder")]) == 2


def test_the_committed_results_render(tmp_path):
    """Every committed results folder (tables and plots only) gets a page."""
    results = Path(__file__).parents[1] / "docs" / "results"
    for table in sorted(results.glob("**/table.csv")) + sorted(results.glob("**/study.csv")):
        page = tmp_path / f"{table.parent.name}.html"
        assert main(["report", str(table.parent), "-o", str(page)]) == 0
        check_page(page, table.parent)


# appended to a copy of a page: after loading, the title says how many images the browser
# decoded and how many body rows each table has
PROBE = ("<script>window.addEventListener('load', () => {"
         "const images = [...document.images];"
         "const decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;"
         "const rows = [...document.querySelectorAll('table[data-source]')].map(t => "
         "t.dataset.source + '=' + t.querySelectorAll('tr:has(td)').length);"
         "document.title = `decoded ${decoded} of ${images.length}; ${rows.join(' ')}`;"
         "});</script></body>")


@pytest.mark.parametrize("study", ["tiny-victims", "tiny-detect"])
def test_the_page_renders_in_a_headless_browser(studies, tmp_path, study):
    """Chromium draws the page, decodes every image and shows every table's CSV rows."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium for a headless screenshot")
    folder = studies / "out" / study
    page = tmp_path / f"{study}.html"
    assert main(["report", str(folder), "-o", str(page)]) == 0
    headless = [browser, "--headless", "--no-sandbox", "--disable-gpu"]
    shot = tmp_path / "page.png"
    subprocess.run([*headless, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    from PIL import Image
    with Image.open(shot) as image:
        assert len(image.convert("L").getcolors(256 * 256) or []) > 16  # drawn, not blank
    probe = tmp_path / f"{study}.probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE),
                     encoding="utf-8")
    dom = subprocess.run([*headless, "--dump-dom", "--virtual-time-budget=5000", probe.as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    images = len(parse(page).images)
    title = dom.split("<title>", 1)[1].split("</title>", 1)[0]
    assert images >= 1 and title.startswith(f"decoded {images} of {images};"), title
    with (folder / "table.csv").open(encoding="utf-8", newline="") as handle:
        rows = len(list(csv.reader(handle))) - 1
    assert f"table.csv={rows}" in title.split(), title


def test_a_score_histogram_reads_at_a_glance(studies):
    """Shares of each split (one scale), the score's meaning on the x axis, each threshold
    named with its FRR and FAR, and one legend for clean, poisoned and the threshold lines."""
    import json

    from poisonlab.report.detection import histogram_grid_figure, histogram_panels
    folder = studies / "out" / "tiny-detect" / "cells" / "strip__badnet"
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    (panel,) = histogram_panels([folder, folder.with_name("unfinished")])
    assert panel.meaning == "minus the mean prediction entropy over the perturbed copies"
    assert panel.thresholds == {"calibrated": (metrics["threshold"], (
        metrics["false_rejection_rate"], metrics["false_acceptance_rate"]))}
    fig = histogram_grid_figure([panel, panel])
    ax = fig.axes[0]
    assert panel.meaning in fig._supxlabel.get_text()
    assert fig._supylabel.get_text() == "share of the split's test inputs (%)"
    clean = [p.get_height() for p in ax.patches[:len(ax.patches) // 2]]
    assert sum(clean) == pytest.approx(100)  # a split's bars add up to 100 %
    note = ax.texts[0].get_text()
    assert f"FRR {metrics['false_rejection_rate']:.1%}" in note and "clean n=20" in note
    assert [t.get_text() for t in fig.legends[0].texts] == [
        "clean test inputs", "poisoned test inputs",
        "calibrated threshold (set on clean held-out inputs)"]
    assert fig.axes[1].get_ylim() == ax.get_ylim() and fig.get_size_inches()[0] <= 12
