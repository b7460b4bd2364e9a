"""One self-contained HTML page (no CDN, no script): the KPI table, the published references beside it, and
plots drawn as inline SVG (matplotlib) where people would rather look than read."""

from __future__ import annotations

import datetime as dt
import html
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bertbench.results.report import KpiRow, format_cell, model_label, table_rows

GENERATOR = "bertbench report"  # in every page's head: a page this tool wrote, which it may write again

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1400px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f0f0f0; } td.text { text-align: left; }
tr.regression td { background: #fde8e8; } tr.contended td { color: #888; }
figure { display: inline-block; margin: 0.5rem 1rem 1rem 0; vertical-align: top; }
figcaption { font-size: 0.85rem; color: #555; max-width: 560px; }
p.note { color: #666; font-size: 0.85rem; }
"""


def _svg(draw: Callable[[Any], None]) -> str:
    """Draw on a fresh matplotlib axes and return the figure as inline SVG markup."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 3.8))
    try:
        draw(axes)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg")
    finally:
        plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _config_label(run: dict[str, Any]) -> str:
    parts = [model_label(run), str(run.get("precision")), str(run.get("backend"))]
    if run.get("quantization") and run.get("precision") == "int8":
        parts.append(str(run["quantization"]))
    if run.get("instances"):
        parts.append(f"{run['instances']}×{run.get('cores_per_instance')}")
    return " ".join(parts)


def _latest(runs: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for run in runs:
        out[key(run)] = run  # runs come oldest first: the last one wins
    return out


def plot_throughput(runs: list[dict[str, Any]]) -> str | None:
    """samples/s against batch size, one line per model x precision x runtime x layout (performance mode)."""
    bench = [r for r in runs if r.get("command") == "bench" and r.get("mode") == "performance" and r.get("throughput")]
    if not bench:
        return None
    series: dict[str, dict[int, float]] = {}
    for run in _latest(bench, lambda r: (_config_label(r), r.get("scenario"), r.get("batch_size"))).values():
        series.setdefault(f"{_config_label(run)} {run.get('scenario')}", {})[run["batch_size"]] = run["throughput"]

    def draw(ax: Any) -> None:
        for label, points in sorted(series.items()):
            xs = sorted(points)
            ax.plot(xs, [points[x] for x in xs], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples/s")
        ax.set_title("Throughput vs batch size")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)

    return _svg(draw)


def plot_accuracy(runs: list[dict[str, Any]]) -> str | None:
    """Relative accuracy of each precision/runtime against FP32, with the guard's threshold."""
    rated = [r for r in runs if isinstance(r.get("relative_accuracy"), int | float)]
    if not rated:
        return None
    latest = _latest(rated, lambda r: (_config_label(r), r.get("task")))
    labels = [f"{r.get('task')}: {_config_label(r)}" for r in latest.values()]
    values = [r["relative_accuracy"] for r in latest.values()]
    target = max(float(r.get("accuracy_target") or 0.99) for r in latest.values())

    def draw(ax: Any) -> None:
        colors = ["#c0392b" if v < target else "#2e86c1" for v in values]
        ax.barh(range(len(values)), values, color=colors)
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.axvline(target, color="#333", linestyle="--", label=f"guard {target:g} of FP32")
        low = min([*values, target])
        ax.set_xlim(max(0.0, low - 0.05), max(1.01, max(values) + 0.01))
        ax.set_xlabel("accuracy relative to FP32 PyTorch")
        ax.set_title("Accuracy vs precision")
        ax.legend(fontsize=7)

    return _svg(draw)


PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")


def plot_latency(runs: list[dict[str, Any]]) -> str | None:
    """LoadGen's latency percentiles per configuration (SingleStream, MultiStream, Server)."""
    bench = [
        r
        for r in runs
        if r.get("command") == "bench"
        and r.get("scenario") != "offline"
        and r.get("loadgen_50.00_percentile_latency_ns")
    ]
    if not bench:
        return None
    latest = _latest(bench, lambda r: (_config_label(r), r.get("scenario"), r.get("batch_size")))

    def draw(ax: Any) -> None:
        for run in latest.values():
            xs = [float(p) for p in PERCENTILES if f"loadgen_{p}_percentile_latency_ns" in run]
            ys = [
                run[f"loadgen_{p}_percentile_latency_ns"] / 1e6
                for p in PERCENTILES
                if f"loadgen_{p}_percentile_latency_ns" in run
            ]
            ax.plot(xs, ys, marker="o", label=f"{_config_label(run)} {run['scenario']} bs{run.get('batch_size')}")
        ax.set_yscale("log")
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms)")
        ax.set_title("Latency distribution (LoadGen percentiles)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)

    return _svg(draw)


def _train_log(run: dict[str, Any]) -> list[dict[str, Any]]:
    path = Path(str(run.get("output_dir") or "")) / "train_log.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def plot_training(runs: list[dict[str, Any]]) -> str | None:
    """Training loss and the evaluation metric against samples seen (fine-tuning and pretraining)."""
    trained = [r for r in runs if r.get("command") in ("finetune", "pretrain")]
    curves = []
    for run in _latest(trained, lambda r: r.get("output_dir")).values():
        batch = (run.get("train_batch_size") or 1) * (run.get("train_grad_accum") or 1) * (run.get("world_size") or 1)
        log = [e for e in _train_log(run) if "loss" in e]
        evals = [e for e in run.get("eval_history") or [] if "samples_seen" in e]
        if log or evals:
            curves.append((run, [(e["step"] * batch, e["loss"]) for e in log], evals))
    if not curves:
        return None

    def draw(ax: Any) -> None:
        twin = ax.twinx()
        for run, losses, evals in curves:
            label = f"{model_label(run)} {run.get('task')}"
            if losses:
                ax.plot([x for x, _ in losses], [y for _, y in losses], label=f"{label} loss")
            metric = next((m for m in ("f1", "accuracy", "mlm_accuracy") if evals and m in evals[-1]), None)
            if metric:
                twin.plot(
                    [e["samples_seen"] for e in evals], [e[metric] for e in evals], "o--", label=f"{label} {metric}"
                )
        ax.set_xlabel("samples seen")
        ax.set_ylabel("training loss")
        twin.set_ylabel("evaluation metric")
        ax.set_title("Training curves")
        lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        names = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
        ax.legend(lines, names, fontsize=7)
        ax.grid(alpha=0.3)

    return _svg(draw)


def plot_roof(runs: list[dict[str, Any]]) -> str | None:
    """FP32 throughput as a fraction of this machine's quiet GEMM roof."""
    rated = [r for r in runs if isinstance(r.get("roof_fraction"), int | float)]
    if not rated:
        return None
    latest = _latest(rated, lambda r: (_config_label(r), r.get("scenario"), r.get("batch_size")))
    labels = [f"{_config_label(r)} {r.get('scenario')} bs{r.get('batch_size')}" for r in latest.values()]
    values = [r["roof_fraction"] for r in latest.values()]

    def draw(ax: Any) -> None:
        ax.barh(range(len(values)), values, color="#27ae60")
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.axvline(1.0, color="#333", linestyle="--")
        ax.set_xlim(0, max(1.05, max(values) + 0.05))
        ax.set_xlabel("achieved FP32 FLOP/s ÷ quiet GEMM roof")
        ax.set_title("Roof fraction")

    return _svg(draw)


PLOTS = (
    ("throughput", "Throughput against batch size per precision and runtime (performance mode).", plot_throughput),
    (
        "accuracy",
        "Accuracy of each precision/runtime relative to FP32 PyTorch; the dashed line is the guard.",
        plot_accuracy,
    ),
    ("latency", "Latency percentiles as LoadGen measured them.", plot_latency),
    (
        "training",
        "Training loss (left axis) and the evaluation metric (right axis) against samples seen.",
        plot_training,
    ),
    ("roof", "FP32 FLOPs of the tokens fed per second, over the machine's quiet GEMM roof.", plot_roof),
)


def _table(rows: list[dict[str, Any]], classes: list[str] | None = None) -> str:
    if not rows:
        return '<p class="note">no rows</p>'
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="{"text" if isinstance(row.get(c), str) else ""}">{html.escape(format_cell(row.get(c)))}</td>'
            for c in columns
        )
        css = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(title: str, rows: list[KpiRow], runs: list[dict[str, Any]], refs: list[dict[str, Any]]) -> str:
    """The whole page."""
    kpis = table_rows(rows)
    classes = ["regression" if r.regressions else "contended" if r.run.get("contended") else "" for r in rows]
    machines = sorted({f"{r.get('cpu_model')} ({r.get('cores_available')} cores) on {r.get('hostname')}" for r in runs})
    ref_columns = ("source", "what", "precision", "batch_size", "throughput", "exact_match", "f1", "mlm_accuracy")
    ref_rows = [{c: ref.get(c) for c in ref_columns} for ref in refs]
    figures = []
    for name, caption, plot in PLOTS:
        svg = plot(runs)
        if svg is None:
            figures.append(f'<p class="note">{html.escape(name)}: no runs of this kind in the selection</p>')
        else:
            figures.append(f'<figure data-plot="{name}">{svg}<figcaption>{html.escape(caption)}</figcaption></figure>')
    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">Generated {generated} from {len(runs)} runs on {html.escape("; ".join(machines) or "-")}.
Rows marked contended were timed while other processes ran; INVALID is LoadGen's verdict; a regression is a
metric worse than the best earlier run of the same configuration by more than its measured noise.</p>
<h2>KPIs (ours)</h2>
{_table(kpis, classes)}
<h2>Published KPIs of the pages we reproduce (theirs, on their hardware)</h2>
{_table(ref_rows)}
<h2>Plots</h2>
{"".join(figures)}
</body></html>
"""
