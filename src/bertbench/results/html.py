"""One self-contained HTML page (no CDN, no script): the KPI table, the published references beside it, and one
plot per question a performance engineer asks, each with the numbers behind it one click away (a table under the
plot). Plots are inline SVG (matplotlib), laid out for a 1400 px page with labels readable at that size."""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertbench.results.fleet import machine, machines
from bertbench.results.formatting import format_cell
from bertbench.results.kpi import KpiRow, model_label, parent_label, table_rows

GENERATOR = "bertbench report"  # in every page's head: a page this tool wrote, which it may write again
FLEET_KEY = "_report_machine"  # set on a page's runs when they come from several machines: labels then say whose

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1400px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; } h3 { font-size: 1rem; margin: 0.2rem 0; }
div.wide { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.78rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.35rem; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } td.text { text-align: left; }
tr.regression td { background: #fde8e8; } tr.contended td { color: #888; }
section.plot { display: inline-block; width: 640px; margin: 0.5rem 1rem 1.5rem 0; vertical-align: top; }
section.plot svg { width: 100%; height: auto; }
figure { margin: 0; } figcaption { font-size: 0.9rem; color: #444; }
details summary { cursor: pointer; font-size: 0.85rem; color: #2e5c8a; margin-top: 0.3rem; }
p.note { color: #666; font-size: 0.85rem; }
"""
FONT = 10  # points: ~13 px at the 660 px a plot is shown at
PALETTE = ("#2e86c1", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d4ac0d", "#34495e")


@dataclass
class Plot:
    """A drawn figure and the numbers behind it."""

    svg: str
    rows: list[dict[str, Any]]


def _svg(draw: Callable[[Any], None], height: float = 4.2) -> str:
    """Draw on a fresh matplotlib axes (6.6 in wide) and return the figure as inline SVG markup."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"font.size": FONT, "axes.titlesize": FONT + 1, "legend.fontsize": FONT - 1}):
        figure, axes = plt.subplots(figsize=(6.6, height))
        try:
            draw(axes)
            figure.tight_layout()
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", bbox_inches="tight")  # the legend under the axes included
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
    if run.get(FLEET_KEY):
        parts.append(f"on {run[FLEET_KEY]}")
    return " ".join(parts)


def _groups(runs: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> dict[Any, list[dict[str, Any]]]:
    """Runs by `key`, oldest first within a group (a group of several runs is rounds of one configuration)."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for run in runs:
        out.setdefault(key(run), []).append(run)
    return out


def _spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def _legend_below(ax: Any, count: int) -> None:
    """The legend under the axes, never over the data."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1 if count > 3 else count, frameon=False)


# ---- the plots ------------------------------------------------------------------------------------------------


def _offline_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The performance-mode Offline bench runs with a throughput."""
    return [
        r
        for r in runs
        if r.get("command") == "bench"
        and r.get("mode") == "performance"
        and r.get("scenario") == "offline"
        and isinstance(r.get("throughput"), int | float)
    ]


def plot_throughput(runs: list[dict[str, Any]]) -> Plot | None:
    """Which path is fastest at each batch size? Offline samples/s per configuration, batch sizes side by side,
    the median of repeated runs with their min–max."""
    offline = _offline_runs(runs)
    if not offline:
        return None
    groups = _groups(offline, lambda r: (_config_label(r), r.get("batch_size")))
    configs = list(dict.fromkeys(label for label, _ in groups))
    batches = sorted({batch for _, batch in groups})
    width = 0.8 / len(configs)
    rows = []

    def draw(ax: Any) -> None:
        for c, config in enumerate(configs):
            xs, medians, low, high = [], [], [], []
            for b, batch in enumerate(batches):
                values = [r["throughput"] for r in groups.get((config, batch), [])]
                if not values:
                    continue
                median, smallest, largest = _spread(values)
                xs.append(b + (c - (len(configs) - 1) / 2) * width)
                medians.append(median)
                low.append(median - smallest)
                high.append(largest - median)
                rows.append(
                    {
                        "path": config,
                        "batch size": batch,
                        "samples/s": median,
                        "runs": len(values),
                        "min": smallest,
                        "max": largest,
                    }
                )
            ax.bar(xs, medians, width * 0.9, yerr=[low, high], capsize=3, label=config, color=PALETTE[c % len(PALETTE)])
        ax.set_xticks(range(len(batches)), [str(b) for b in batches])
        ax.set_xlabel("batch size (Offline)")
        ax.set_ylabel("samples/s")
        ax.set_ylim(bottom=0)
        ax.set_title("Which path is fastest? Offline throughput")
        ax.grid(axis="y", alpha=0.3)
        _legend_below(ax, len(configs))

    svg = _svg(draw, height=3.6 + 0.25 * len(configs))
    return Plot(svg, rows)


def plot_accuracy(runs: list[dict[str, Any]]) -> Plot | None:
    """Which precision keeps the accuracy? Each path's accuracy relative to FP32 PyTorch, against the guard."""
    rated = [r for r in runs if isinstance(r.get("relative_accuracy"), int | float)]
    if not rated:
        return None
    groups = _groups(rated, lambda r: (r.get("task"), _config_label(r)))
    labels = [f"{task}: {label}" for task, label in groups]
    values = [_spread([r["relative_accuracy"] for r in group])[0] for group in groups.values()]
    target = max(float(r.get("accuracy_target") or 0.99) for r in rated)
    rows = [
        {"path": label, "relative accuracy": value, "runs": len(group), "guard": target}
        for label, value, group in zip(labels, values, groups.values(), strict=True)
    ]

    def draw(ax: Any) -> None:
        colors = ["#c0392b" if v < target else "#2e86c1" for v in values]
        ax.barh(range(len(values)), values, color=colors)
        ax.set_yticks(range(len(values)), [_wrap(label, 44) for label in labels])
        ax.invert_yaxis()
        ax.axvline(target, color="#333", linestyle="--", label=f"guard: {target:g} of FP32")
        low = min([*values, target])
        ax.set_xlim(max(0.0, low - 0.03), max(1.01, max(values) + 0.012))  # room for the value labels
        for y, value in enumerate(values):
            ax.text(value, y, f" {value:.4f}", va="center", fontsize=FONT - 1)
        ax.set_xlabel("accuracy relative to FP32 PyTorch")
        ax.set_title("Which precision keeps the accuracy?")
        _legend_below(ax, 1)

    return Plot(_svg(draw, height=1.6 + 0.45 * len(values)), rows)


LATENCY_KEYS = (("p50", "latency_p50_ms"), ("p90", "latency_p90_ms"), ("p99", "latency_p99_ms"))


def plot_latency(runs: list[dict[str, Any]]) -> Plot | None:
    """What latency does a query see? p50, p90 and p99 per configuration (SingleStream, MultiStream, Server; an
    Offline query is the whole data set, not a service latency)."""
    served = [
        r
        for r in runs
        if r.get("command") == "bench"
        and r.get("mode") == "performance"
        and r.get("scenario") != "offline"
        and isinstance(r.get("latency_p50_ms"), int | float)
    ]
    if not served:
        return None
    groups = _groups(served, lambda r: f"{_config_label(r)} {r.get('scenario')} bs{r.get('batch_size')}")
    labels = list(groups)
    rows = []
    for label, group in groups.items():
        row: dict[str, Any] = {"path": label, "runs": len(group)}
        for name, key in LATENCY_KEYS:
            row[f"{name} ms"] = _spread([r[key] for r in group if isinstance(r.get(key), int | float)])[0]
        rows.append(row)
    every = [row[f"{name} ms"] for row in rows for name, _ in LATENCY_KEYS]
    log = max(every) / max(min(every), 1e-9) > 30  # a linear axis would flatten the fast paths

    def draw(ax: Any) -> None:
        import matplotlib.ticker as ticker

        width = 0.8 / len(LATENCY_KEYS)
        for k, (name, _) in enumerate(LATENCY_KEYS):
            xs = [i + (k - 1) * width for i in range(len(labels))]
            ax.bar(xs, [row[f"{name} ms"] for row in rows], width * 0.9, label=name, color=PALETTE[k])
        ax.set_xticks(range(len(labels)), [_wrap(label, 22) for label in labels], fontsize=FONT - 1)
        ax.set_ylabel("latency per query (ms)")
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        else:
            ax.set_ylim(bottom=0)
        ax.set_title("What latency does a query see? (LoadGen)")
        ax.grid(axis="y", alpha=0.3, which="both" if log else "major")
        _legend_below(ax, len(LATENCY_KEYS))

    return Plot(_svg(draw, height=4.4), rows)


def _train_log(run: dict[str, Any]) -> list[dict[str, Any]]:
    path = Path(str(run.get("output_dir") or "")) / "train_log.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def plot_training(runs: list[dict[str, Any]]) -> Plot | None:
    """Did training converge, and where did evaluation get to? Loss and the evaluation metric against samples."""
    trained = [r for r in runs if r.get("command") in ("finetune", "pretrain")]
    curves = []
    for run in _groups(trained, lambda r: r.get("output_dir")).values():
        run = run[-1]
        batch = (run.get("train_batch_size") or 1) * (run.get("train_grad_accum") or 1) * (run.get("world_size") or 1)
        log = [e for e in _train_log(run) if "loss" in e]
        evals = [e for e in run.get("eval_history") or [] if "samples_seen" in e]
        if log or evals:
            curves.append((run, [(e["step"] * batch, e["loss"]) for e in log], evals))
    if not curves:
        return None
    rows = []
    for run, losses, evals in curves:
        metric = next((m for m in ("f1", "accuracy", "pearson", "mlm_accuracy") if evals and m in evals[-1]), None)
        rows.append(
            {
                "model": f"{model_label(run)} {run.get('task')}",
                "samples": losses[-1][0] if losses else None,
                "final loss": losses[-1][1] if losses else None,
                "metric": metric,
                "last evaluation": evals[-1][metric] if metric else None,
            }
        )

    def draw(ax: Any) -> None:
        twin = ax.twinx()
        for i, (run, losses, evals) in enumerate(curves):
            label = f"{model_label(run)} {run.get('task')}"
            color = PALETTE[i % len(PALETTE)]
            if losses:
                ax.plot([x for x, _ in losses], [y for _, y in losses], color=color, alpha=0.8, label=f"{label} loss")
            metric = next((m for m in ("f1", "accuracy", "pearson", "mlm_accuracy") if evals and m in evals[-1]), None)
            if metric:
                twin.plot(
                    [e["samples_seen"] for e in evals],
                    [e[metric] for e in evals],
                    "o--",
                    color=color,
                    label=f"{label} {metric}",
                )
        ax.set_xlabel("samples seen")
        ax.set_ylabel("training loss")
        ax.set_ylim(bottom=0)
        twin.set_ylabel("evaluation metric (dashed)")
        ax.set_title("Did training converge?")
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        names = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
        ax.legend(
            handles, [_wrap(n, 60) for n in names], loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False
        )
        ax.grid(alpha=0.3)

    return Plot(_svg(draw, height=3.8 + 0.25 * len(curves)), rows)


def plot_roof(runs: list[dict[str, Any]]) -> Plot | None:
    """How much of this machine's FP32 compute does each path use? Achieved GFLOP/s against the quiet roof."""
    rated = [r for r in runs if isinstance(r.get("roof_fraction"), int | float) and r.get("achieved_gflops")]
    if not rated:
        return None
    groups = _groups(rated, lambda r: f"{_config_label(r)} {r.get('scenario')} bs{r.get('batch_size')}")
    labels = list(groups)
    achieved = [_spread([r["achieved_gflops"] for r in group])[0] for group in groups.values()]
    roofs = [_spread([r["roof_gflops_total"] for r in group])[0] for group in groups.values()]
    rows = [
        {"path": label, "achieved GFLOP/s": a, "quiet roof GFLOP/s": roof, "fraction": a / roof}
        for label, a, roof in zip(labels, achieved, roofs, strict=True)
    ]

    def draw(ax: Any) -> None:
        ax.barh(range(len(labels)), achieved, color="#27ae60", label="achieved")
        for y, roof in enumerate(roofs):
            ax.plot(
                [roof, roof], [y - 0.4, y + 0.4], color="#333", linewidth=2, label="quiet GEMM roof" if y == 0 else None
            )
            ax.text(
                achieved[y],
                y,
                f" {achieved[y]:.0f} of {roof:.0f} ({achieved[y] / roof:.0%})",
                va="center",
                fontsize=FONT - 1,
            )
        ax.set_yticks(range(len(labels)), [_wrap(label, 40) for label in labels])
        ax.invert_yaxis()
        ax.set_xlim(0, max(roofs) * 1.35)
        ax.set_xlabel("GFLOP/s (FP32)")
        ax.set_title("How much of the FP32 roof is used?")
        _legend_below(ax, 2)

    return Plot(_svg(draw, height=1.8 + 0.5 * len(labels)), rows)


def plot_machines(runs: list[dict[str, Any]]) -> Plot | None:
    """Which machine is fastest? Offline samples/s of each configuration run on two machines or more, a bar per
    machine, each labelled with its ratio to the first machine's."""
    offline = _offline_runs(runs)
    hosts = machines(offline)
    if len(hosts) < 2:
        return None
    # a configuration across machines: the same model, path and batch, each machine on its own cores
    by_config = _groups(
        offline, lambda r: f"{_config_label({**r, FLEET_KEY: None, 'instances': None})} bs{r.get('batch_size')}"
    )
    shared = {label: group for label, group in by_config.items() if len(machines(group)) > 1}
    if not shared:
        return None
    labels = list(shared)
    width = 0.8 / len(hosts)
    rows = []

    def draw(ax: Any) -> None:
        for h, host in enumerate(hosts):
            ys, values = [], []
            for y, label in enumerate(labels):
                mine = [r["throughput"] for r in shared[label] if machine(r) == host]
                if not mine:
                    continue
                first = [r["throughput"] for r in shared[label] if machine(r) == hosts[0]]
                median = _spread(mine)[0]
                ratio = median / _spread(first)[0] if first else None
                ys.append(y + (h - (len(hosts) - 1) / 2) * width)
                values.append(median)
                rows.append(
                    {"path": label, "machine": host, "samples/s": median, "runs": len(mine), f"× {hosts[0]}": ratio}
                )
                if ratio is not None:
                    ax.text(median, ys[-1], f" {ratio:.2f}×", va="center", fontsize=FONT - 1)
            ax.barh(ys, values, width * 0.9, label=host, color=PALETTE[h % len(PALETTE)])
        ax.set_yticks(range(len(labels)), [_wrap(label, 40) for label in labels])
        ax.invert_yaxis()
        ax.set_xlim(0, max(r["samples/s"] for r in rows) * 1.25)
        ax.set_xlabel("samples/s (Offline, median)")
        ax.set_title("Which machine is fastest?")
        ax.grid(axis="x", alpha=0.3)
        _legend_below(ax, len(hosts))

    return Plot(_svg(draw, height=2.2 + 0.45 * len(labels) * len(hosts)), rows)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points that no other point beats on both coordinates (higher is better for both)."""
    return [
        i
        for i, (x, y) in enumerate(points)
        if not any(a >= x and b >= y and (a > x or b > y) for j, (a, b) in enumerate(points) if j != i)
    ]


FRONTIER_METRICS = (("f1", "F1"), ("accuracy", "accuracy"), ("pearson", "Pearson"))


def _frontier_label(run: dict[str, Any]) -> str:
    """A point of the frontier: one path as timed (command, batch size and threads change the speed)."""
    return f"{_config_label(run)} bs{run.get('batch_size')} {run.get('threads')}t {run.get('command')}"


def plot_frontier(runs: list[dict[str, Any]]) -> Plot | None:
    """Speed or accuracy? Each path of a model (its pruned children included) as a point: samples/s against the
    task metric, the Pareto front joined. Accuracy-mode runs of trained models, one panel per model family."""
    scored = [
        r
        for r in runs
        if r.get("command") in ("eval", "bench")
        and isinstance(r.get("throughput"), int | float)
        and not r.get("random_weights")
        and not r.get("parent_random_weights")
        and any(isinstance(r.get(key), int | float) for key, _ in FRONTIER_METRICS)
    ]
    families = _groups(scored, lambda r: (r.get("task"), parent_label(r)))
    families = {key: group for key, group in families.items() if len(_groups(group, _frontier_label)) > 1}
    if not families:
        return None
    rows: list[dict[str, Any]] = []
    panels = []
    for (task, family), group in families.items():
        metric, name = next(
            (k, n) for k, n in FRONTIER_METRICS if any(isinstance(r.get(k), int | float) for r in group)
        )
        paths = _groups([r for r in group if isinstance(r.get(metric), int | float)], _frontier_label)
        points = [
            (_spread([r["throughput"] for r in g])[0], _spread([r[metric] for r in g])[0]) for g in paths.values()
        ]
        front = pareto_front(points)
        for index, (label, (speed, value)) in enumerate(zip(paths, points, strict=True)):
            rows.append({"model": family, "path": label, "samples/s": speed, name: value, "Pareto": index in front})
        panels.append((f"{task}: {family}", family, name, list(paths), points, front))

    def draw(ax: Any) -> None:
        for p, (title, family, _, labels, points, front) in enumerate(panels):
            color = PALETTE[p % len(PALETTE)]
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, color=color, s=28, label=_wrap(title, 70), zorder=3)
            best = sorted(points[i] for i in front)
            ax.plot([x for x, _ in best], [y for _, y in best], color=color, linestyle="--", linewidth=1.2)
            for i, label in enumerate(labels):
                short = label.removeprefix(family).strip() or label  # the legend names the family
                ax.annotate(
                    _wrap(short, 36),
                    points[i],
                    fontsize=FONT - 3,
                    xytext=(4, 3),
                    textcoords="offset points",
                    fontweight="bold" if i in front else "normal",
                )
        ax.set_xlabel("samples/s (median of the runs of a path)")
        ax.set_ylabel(" / ".join(sorted({panel[2] for panel in panels})))
        ax.set_title("Speed or accuracy? Every path of a model; dashed: the Pareto front")
        ax.grid(alpha=0.3)
        _legend_below(ax, len(panels))

    return Plot(_svg(draw, height=4.6 + 0.3 * len(panels)), rows)


def _wrap(text: str, width: int) -> str:
    """Break a long label into lines of at most `width` characters, at spaces."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


PLOTS = (
    (
        "throughput",
        "Offline samples/s per path and batch size (bars: median of repeated runs; whiskers: min–max).",
        plot_throughput,
    ),
    (
        "accuracy",
        "Accuracy relative to FP32 PyTorch on the same model and data; red bars miss the guard.",
        plot_accuracy,
    ),
    (
        "latency",
        "p50, p90 and p99 query latency as LoadGen measured them (SingleStream, MultiStream, Server).",
        plot_latency,
    ),
    (
        "frontier",
        "Speed against accuracy for every path of a model, pruned versions included; bold labels: the Pareto front "
        "(no other path is both faster and more accurate).",
        plot_frontier,
    ),
    ("training", "Training loss (solid, left axis) and the evaluation metric (dashed, right axis).", plot_training),
    ("roof", "FP32 FLOPs of the tokens fed per second, against this machine's quiet GEMM roof.", plot_roof),
    (
        "machines",
        "Offline samples/s of each configuration on every machine that ran it; labels: the ratio to the first.",
        plot_machines,
    ),
)
ONLY_WHEN_DRAWN = {"machines"}  # a one-machine page has nothing to say about machines


def _table(rows: list[dict[str, Any]], classes: list[str] | None = None) -> str:
    if not rows:
        return '<p class="note">no rows</p>'
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="{"text" if isinstance(row.get(c), str) else ""}">{html.escape(format_cell(row.get(c), c))}'
            "</td>"
            for c in columns
        )
        css = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(title: str, rows: list[KpiRow], runs: list[dict[str, Any]], refs: list[dict[str, Any]]) -> str:
    """The whole page."""
    kpis = table_rows(rows)
    classes = ["regression" if r.regressions else "contended" if r.run.get("contended") else "" for r in rows]
    hosts = sorted({f"{r.get('cpu_model')} ({r.get('cores_available')} cores) on {r.get('hostname')}" for r in runs})
    if len(machines(runs)) > 1:  # every plot's labels say whose run it is
        runs = [{**run, FLEET_KEY: machine(run)} for run in runs]
    ref_columns = (
        "source",
        "what",
        "precision",
        "batch_size",
        "throughput",
        "exact_match",
        "f1",
        "accuracy",
        "pearson",
        "mlm_accuracy",
    )
    ref_rows = [{c: ref.get(c) for c in ref_columns} for ref in refs]
    sections = []
    for name, caption, plot in PLOTS:
        drawn = plot(runs)
        if drawn is None and name in ONLY_WHEN_DRAWN:
            continue
        if drawn is None:
            sections.append(f'<p class="note">{html.escape(name)}: no runs of this kind in the selection</p>')
            continue
        sections.append(
            f'<section class="plot"><figure data-plot="{name}">{drawn.svg}'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            f"<details><summary>the numbers behind it</summary>{_table(drawn.rows)}</details></section>"
        )
    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">Generated {generated} from {len(runs)} runs on {html.escape("; ".join(hosts) or "-")}.
Notes: quiet or contended says whether other processes ran while a figure was timed (no roof: only their CPU was
watched); INVALID is LoadGen's verdict; a regression is a metric worse than the best earlier run of the same
configuration by more than its measured noise.</p>
<h2>KPIs (ours)</h2>
<div class="wide">{_table(kpis, classes)}</div>
<h2>Published KPIs of the pages we reproduce (theirs, on their hardware)</h2>
<div class="wide">{_table(ref_rows)}</div>
<h2>Plots</h2>
{"".join(sections)}
</body></html>
"""
