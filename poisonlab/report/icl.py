"""The study's table (markdown + CSV) and plot, read from its run folders only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poisonlab.errors import ConfigError
from poisonlab.io import write_text
from poisonlab.report.plots import save_png
from poisonlab.report.tables import csv_table, markdown_table

MEASURES = ("ca_clean", "ca_attacked", "natural_error_baseline", "natural_error_attacked",
            "asr_baseline", "asr_attacked", "asr_lift", "flip_rate_baseline",
            "flip_rate_attacked", "flip_rate_lift", "margin_change_baseline",
            "margin_change_attacked", "margin_shift")
VARIANTS = ("raw", "calibrated")


def _pair(row: dict[str, Any], measure: str, percent: bool = True) -> str:
    """raw / calibrated; n/a where a measure is undefined (stored as null) or was not recorded
    (runs older than the measure)."""
    def show(value: float | None) -> str:
        if value is None:
            return "n/a"
        return f"{100 * value:.1f}" if percent else f"{value:+.2f}"
    return f"{show(row.get(f'{measure}_raw'))} / {show(row.get(f'{measure}_calibrated'))}"


def headline_table(rows: list[dict[str, Any]], study: Any) -> str:
    """The reference cells (demonstration attack at reference_count, end; prompt attack at its
    largest count), each value as raw / calibrated."""
    reference = {f"demonstration-k{study.reference_count}-end", f"prompt-k{max(study.prompt_counts)}"}
    columns = ["dataset", "attack", "poisoned", "n_test", "CA clean", "CA attacked",
               "natural error attacked", "ASR baseline", "ASR attacked", "ASR lift",
               "flip baseline", "flip attacked", "margin change baseline",
               "margin change attacked", "margin shift"]
    shown = [{"dataset": r["dataset"], "attack": r["attack"], "poisoned": r["poisoned"],
              "n_test": r["n_test"], "CA clean": _pair(r, "ca_clean"),
              "CA attacked": _pair(r, "ca_attacked"),
              "natural error attacked": _pair(r, "natural_error_attacked"),
              "ASR baseline": _pair(r, "asr_baseline"),
              "ASR attacked": _pair(r, "asr_attacked"), "ASR lift": _pair(r, "asr_lift"),
              "flip baseline": _pair(r, "flip_rate_baseline"),
              "flip attacked": _pair(r, "flip_rate_attacked"),
              "margin change baseline": _pair(r, "margin_change_baseline", percent=False),
              "margin change attacked": _pair(r, "margin_change_attacked", percent=False),
              "margin shift": _pair(r, "margin_shift", percent=False)}
             for r in rows if r["cell"] in reference]
    return markdown_table(shown, columns)


def ablation_table(rows: list[dict[str, Any]]) -> str:
    """Every cell, grouped by data set, attack and trigger position, by number poisoned."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    rows = sorted(rows, key=lambda r: (datasets.index(r["dataset"]), r["attack"],
                                       r["position"] != "end", r["position"], r["poisoned"]))
    columns = ["dataset", "attack", "poisoned", "position", "CA attacked",
               "natural error attacked", "ASR baseline", "ASR attacked", "flip attacked",
               "margin shift"]
    shown = [{"dataset": r["dataset"], "attack": r["attack"], "poisoned": r["poisoned"],
              "position": r["position"], "CA attacked": _pair(r, "ca_attacked"),
              "natural error attacked": _pair(r, "natural_error_attacked"),
              "ASR baseline": _pair(r, "asr_baseline"), "ASR attacked": _pair(r, "asr_attacked"),
              "flip attacked": _pair(r, "flip_rate_attacked"),
              "margin shift": _pair(r, "margin_shift", percent=False)} for r in rows]
    return markdown_table(shown, columns)


def icl_figure(rows: list[dict[str, Any]]) -> Any:
    """Per data set: attacked ASR (solid) and the baseline ASR of the same triggered inputs with
    clean demonstrations (dashed), in percent, against the number of poisoned demonstrations,
    raw and calibrated; below, the margin shift."""
    from matplotlib.ticker import MaxNLocator
    from poisonlab.report.plots import MAX_WIDTH, number, pyplot
    plt = pyplot()

    names = list(dict.fromkeys(r["dataset"] for r in rows))
    width = min(MAX_WIDTH, max(6.0, 4 * len(names)))
    fig, axes = plt.subplots(2, len(names), figsize=(width, 6.4), squeeze=False)
    series = [("icl-demonstration", "end", "demonstration attack", "tab:red"),
              ("icl-prompt", "-", "prompt attack", "tab:blue")]
    for col, name in enumerate(names):
        top, bottom = axes[0][col], axes[1][col]
        for attack, position, label, color in series:
            cells = sorted((r for r in rows if r["dataset"] == name and r["attack"] == attack
                            and r["position"] == position), key=lambda r: int(r["poisoned"]))
            if not cells:
                continue
            k = [int(r["poisoned"]) for r in cells]
            for variant, marker in (("raw", "o"), ("calibrated", "s")):
                alpha = 1 if variant == "calibrated" else 0.5
                top.plot(k, [100 * number(r[f"asr_attacked_{variant}"]) for r in cells],
                         marker=marker, color=color, label=f"{label}, {variant}", alpha=alpha)
                top.plot(k, [100 * number(r[f"asr_baseline_{variant}"]) for r in cells],
                         ls="--", marker="x", color=color, alpha=alpha,
                         label=f"{label} baseline, {variant}")
            # calibration moves both margins of a context by one constant: raw = calibrated
            bottom.plot(k, [number(r["margin_shift_raw"]) for r in cells], marker="o",
                        color=color, label=label)
        top.set_title(f"{name}: attack success rate")
        top.set_ylabel("ASR (%)")
        top.set_ylim(0, 105)
        bottom.axhline(0, color="gray", lw=0.8, ls="--", label="no shift (baseline)")
        bottom.set_title(f"{name}: margin shift")
        bottom.set_ylabel("margin shift (log-prob, nats)")
        for ax in (top, bottom):
            ax.set_xlabel("poisoned demonstrations (count)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.margins(x=0.1)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    axes[1][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle("ICLAttack: ASR with poisoned vs clean demonstrations (dashed = baseline)")
    fig.tight_layout()
    return fig


def write_study_report(study: Any, rows: list[dict[str, Any]],
                       output_dir: str | Path | None = None) -> list[Path]:
    """Table, CSV and plot of the finished cells' rows (poisonlab.studies.icl.study_rows), in
    `output_dir` (default: the study's report folder); a study with no finished cell is an
    error, so no table is replaced by an empty one."""
    if not rows:
        raise ConfigError(f"study has no finished cells in {study.output_dir}; run "
                          "`poisonlab icl study` first")
    out = Path(output_dir) if output_dir else study.report_dir
    columns = ["dataset", "cell", "attack", "poisoned", "position", "n_test", "n_non_target",
               *[f"{m}_{v}" for v in VARIANTS for m in MEASURES]]
    text = ("# ICLAttack study (raw / calibrated; percentages except the margins, in nats)\n\n"
            "Natural error: clean non-target inputs the same context already predicts as the "
            "target; margin change: how the trigger moves the target margin in one context "
            "(clean or poisoned demonstrations); margin shift: their difference.\n\n"
            "## Reference cells\n\n" + headline_table(rows, study) +
            "\n## Ablation\n\n" + ablation_table(rows))
    return [write_text(out / "study.md", text),
            write_text(out / "study.csv", csv_table(rows, columns)),
            save_png(icl_figure(rows), out / "study.png")]
