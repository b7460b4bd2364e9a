"""The accuracy guard (a library, used by `eval` and `bench`): every reduced-precision or other-runtime result
is compared with FP32 PyTorch on the same model and data (computed once, then found in the cache), and
layer-wise INT8 fallback to meet a target."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

from bertbench.cache import Cache
from bertbench.console import info, warn
from bertbench.errors import BertbenchError
from bertbench.evaluation import evaluate_loaded
from bertbench.models import LoadedModel, load_model, resolve_model
from bertbench.models.loading import model_fingerprint
from bertbench.runtimes.options import Placement, RuntimeOptions
from bertbench.tasks.base import EvalData, Task
from bertbench.tasks.labels import fit_task_labels, head_labels


def is_fp32_reference(options: RuntimeOptions) -> bool:
    """Whether a run is itself the FP32 reference of the guard: PyTorch eager (not compiled) in FP32. Every other
    path is compared with it; `eval` and `bench` ask this one question."""
    return options.backend == "torch" and options.precision == "fp32" and not options.own.compile


def reference_metrics(
    loaded: LoadedModel,
    dataset: EvalData,
    task: Task,
    task_options: Any,
    data_key: str,
    threads: int,
    cache: Cache,
    batch_size: int = 32,
) -> tuple[dict[str, Any], bool]:
    """(FP32 PyTorch metrics of this model on this data, whether they came from the cache)."""
    parts = _reference_parts(loaded, task, task_options, data_key)

    def build(directory: Path) -> None:
        info("computing the FP32 reference (torch) for the accuracy guard")
        _, metrics = evaluate_loaded(
            loaded,
            dataset,
            task,
            RuntimeOptions(),
            Placement(threads=threads),
            batch_size=batch_size,
            task_options=task_options,
            show_progress=False,
        )
        (directory / "metrics.json").write_text(json.dumps(metrics, default=str))

    entry, hit = cache.get_or_build("reference-metrics", parts, build)
    return json.loads((entry / "metrics.json").read_text()), hit


def _reference_parts(loaded: LoadedModel, task: Task, task_options: Any, data_key: str) -> dict[str, Any]:
    return {
        "model": model_fingerprint(loaded.model),
        "task": task.name,
        "data": data_key,
        "options": task_options.as_dict(),
        "torch": metadata.version("torch"),
    }


def remember_reference(
    loaded: LoadedModel, task: Task, task_options: Any, data_key: str, metrics: dict[str, Any], cache: Cache
) -> None:
    """An FP32 PyTorch evaluation is the reference of every later precision on the same model and data: keep it
    where reference_metrics() looks, so that they need not recompute it."""
    parts = _reference_parts(loaded, task, task_options, data_key)
    cache.get_or_build(
        "reference-metrics", parts, lambda d: (d / "metrics.json").write_text(json.dumps(metrics, default=str))
    )


def guard(metrics: dict[str, Any], reference: dict[str, Any], primary: str, target: float) -> dict[str, Any]:
    """reference_<metric>, relative_accuracy (= metric / reference) and whether it meets the target."""
    ours, ref = metrics.get(primary), reference.get(primary)
    relative = ours / ref if ours is not None and ref else None
    return {
        f"reference_{primary}": ref,
        "relative_accuracy": relative,
        "accuracy_target": target,
        # undefined (None), not failed, when the reference scores 0: a ratio to zero says nothing
        "meets_accuracy_target": None if relative is None else relative >= target,
        f"{primary}_drop": (ref - ours) if ours is not None and ref is not None else None,
    }


def choose_fp32_layers(
    loaded: LoadedModel,
    tuning: EvalData,
    task: Task,
    task_options: Any,
    options: RuntimeOptions,
    placement: Placement,
    target: float,
) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """Keep the most INT8-sensitive encoder layers in FP32 until relative accuracy on `tuning` (training data,
    never the evaluated file) meets `target`. Each layer's effect is measured by leaving it alone in FP32."""
    primary = task.primary_metric

    def score(keep: tuple[str, ...], precision: str = "int8") -> float:
        run = replace(options, precision=precision, keep_fp32=keep)
        _, metrics = evaluate_loaded(
            loaded, tuning, task, run, placement, task_options=task_options, show_progress=False
        )
        return float(metrics[primary])

    reference = score((), precision="fp32")
    all_int8 = score(())
    log = [{"kept_fp32": [], "tuning_relative_accuracy": all_int8 / reference}]
    if all_int8 / reference >= target:
        return (), log
    layers = [f"layer.{i}" for i in range(loaded.model.config.num_hidden_layers)]
    gains = {layer: score((layer,)) - all_int8 for layer in layers}
    keep: tuple[str, ...] = ()
    for layer in sorted(layers, key=lambda k: -gains[k]):
        keep = (*keep, layer)
        relative = score(keep) / reference
        log.append({"kept_fp32": list(keep), "tuning_relative_accuracy": relative})
        if relative >= target:
            break
    return keep, log


def accuracy_facts(
    loaded: LoadedModel,
    dataset: EvalData,
    task: Task,
    task_options: Any,
    metrics: dict[str, Any],
    runtime: RuntimeOptions,
    threads: int,
    data_key: str,
    target: float,
    cache: Cache,
) -> dict[str, Any]:
    """The guard's keys for one measured run: FP32 PyTorch is its own reference; anything else is compared
    with FP32 PyTorch on the same model and data (cached); random weights and unlabelled data compare nothing."""
    primary = task.primary_metric
    provenance = loaded.source.provenance
    if loaded.source.random_weights or provenance.get("parent_random_weights") or metrics.get(primary) is None:
        return {"relative_accuracy": None}
    if is_fp32_reference(runtime):
        remember_reference(loaded, task, task_options, data_key, metrics, cache)
        own, hit = guard(metrics, metrics, primary, target), None
    else:
        reference, hit = reference_metrics(loaded, dataset, task, task_options, data_key, threads, cache)
        own = {**guard(metrics, reference, primary, target), "reference_cache_hit": hit}
    if not loaded.source.config.is_pruned:
        return own
    # A pruned model answers to its unpruned parent: relative_accuracy is against the parent's FP32 (pruning and
    # precision together); relative_to_own_fp32 isolates what the backend and precision cost.
    parent = _pruning_parent(loaded, task)
    if parent is None:  # the parent is gone or changed: at least the precision is guarded, against itself
        return {**own, "reference_model": "self", "relative_to_own_fp32": own["relative_accuracy"]}
    reference, hit = reference_metrics(parent, dataset, task, task_options, data_key, threads, cache)
    return {
        **guard(metrics, reference, primary, target),
        "reference_model": provenance.get("pruned_from"),
        "reference_cache_hit": hit,
        "relative_to_own_fp32": own["relative_accuracy"],
    }


def _pruning_parent(loaded: LoadedModel, task: Task) -> LoadedModel | None:
    """The unpruned model a pruned one came from, as it was when pruned; None (with a warning) when it is gone or
    its weights changed since: a comparison with another model would be a wrong guard."""
    where = loaded.source.provenance.get("pruned_from")
    if not where:
        warn(f"{loaded.source.name}: pruned, but its metrics.json does not name its parent: guarded against itself")
        return None
    try:
        source = resolve_model(where)
    except BertbenchError as exc:
        warn(f"{loaded.source.name}: its parent is not readable ({exc}): guarded against itself only")
        return None
    if source.fingerprint != loaded.source.provenance.get("parent_fingerprint"):
        warn(f"{loaded.source.name}: its parent {where} changed since pruning: guarded against itself only")
        return None
    seed = loaded.source.provenance.get("parent_seed")
    # a parent whose head was fresh when pruned had the pruned model's labels
    source = fit_task_labels(task, source, labels=head_labels(task, loaded.model.config))
    return load_model(source, task.head, seed=seed if isinstance(seed, int) else 0)


def accuracy_references(
    loaded: LoadedModel,
    dataset: EvalData,
    task: Task,
    task_options: Any,
    data_key: str,
    runtime: RuntimeOptions,
    threads: int,
    cache: Cache,
) -> None:
    """Compute (or find) every FP32 reference accuracy_facts will ask for, ahead of a timed run: the model's own
    unless it is its own reference, and a pruned model's parent's."""
    if not is_fp32_reference(runtime):
        reference_metrics(loaded, dataset, task, task_options, data_key, threads, cache)
    if loaded.source.config.is_pruned:
        parent = _pruning_parent(loaded, task)
        if parent is not None:
            reference_metrics(parent, dataset, task, task_options, data_key, threads, cache)
