"""Measuring the latency table of `bertbench prune --latency` (pruning.latency): one-layer models of the parent's
shapes, pruned to the grid's head counts and widths, stored and loaded as any pruned model, prepared on the asked
backend and precision, and timed on a batch of the data's mean window length, interleaved over rounds.

The table is cached per CPU model (with its family, model and stepping), backend, precision, shapes, window, batch
and threads, so it is measured once per machine kind. A measurement beside other work is used but not cached, and
said so.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertbench.bench.quiet import OtherLoadMeter
from bertbench.cache import Cache
from bertbench.console import info, warn
from bertbench.hardware import cpu_identity, isa_flags
from bertbench.models import LoadedModel, load_model, resolve_model, save_model
from bertbench.models.pruning import prune_model
from bertbench.pruning.latency import LatencyTable, fit_table, grid
from bertbench.runtimes.options import Placement, RuntimeOptions
from bertbench.runtimes.registry import create_runtime

BUSY_CORES = 0.25  # other work beyond this makes a measurement contended (not cached)
TABLE = "latency-table.json"


def latency_table(
    parent: LoadedModel,
    options: RuntimeOptions,
    placement: Placement,
    window: int,
    batch: int,
    cache: Cache,
    rounds: int = 5,
) -> tuple[LatencyTable, bool]:
    """The table for `parent`'s shapes on this machine, from the cache or measured; (table, cache hit)."""
    config = parent.model.config.unpruned()
    parts = {
        "cpu": {**cpu_identity(), "isa": isa_flags()},
        "backend": options.backend,
        "precision": options.precision,
        "quantization": options.quantization if options.precision == "int8" else None,
        "per_channel": options.per_channel,
        "own": repr(options.own),
        "architecture": parent.model.architecture,
        "shape": [config.hidden_size, config.num_attention_heads, config.intermediate_size, config.hidden_act],
        "layers": config.num_hidden_layers,
        "window": window,
        "batch": batch,
        "threads": placement.threads,
        "device": placement.device,
    }
    entry = cache.path("latency-table", parts)
    if cache.is_valid(entry):
        return LatencyTable.from_dict(json.loads((entry / TABLE).read_text())), True
    table, other_cores = _measure(parent, options, placement, window, batch, rounds, parts)
    if other_cores > BUSY_CORES:
        warn(
            f"the latency table was measured beside {other_cores:.2f} cores of other work: used for this prune, "
            "not cached (measure it again on a quiet machine)"
        )
        return table, False
    cache.get_or_build("latency-table", parts, lambda tmp: (tmp / TABLE).write_text(json.dumps(table.as_dict())))
    return table, False


def _measure(
    parent: LoadedModel,
    options: RuntimeOptions,
    placement: Placement,
    window: int,
    batch: int,
    rounds: int,
    parts: dict[str, Any],
) -> tuple[LatencyTable, float]:
    """Times per batch of the grid's one-layer models, interleaved (A B C … A B C …); (table, other cores)."""
    config = parent.model.config.unpruned()
    heads, neurons = config.num_attention_heads, config.intermediate_size
    one_layer = replace(config, num_hidden_layers=1)
    generator = torch.Generator().manual_seed(0)
    inputs = _inputs(one_layer.vocab_size, batch, window, generator)
    info(f"measuring the latency table ({options.backend} {options.precision}, {batch} x {window} tokens)")
    with tempfile.TemporaryDirectory(prefix="bertbench-latency-") as scratch:
        runtimes = {}
        for kept_heads, kept_neurons in grid(heads, neurons):
            model = type(parent.model)(one_layer)
            model.init_weights(generator)
            pruned = prune_model(
                model, {0: list(range(kept_heads, heads))}, [torch.arange(kept_neurons, dtype=torch.long)]
            )
            directory = Path(scratch) / f"h{kept_heads}-n{kept_neurons}"
            save_model(pruned, parent.tokenizer, directory)
            runtime = create_runtime(options.backend)
            runtime.prepare(load_model(resolve_model(str(directory)), type(parent.model)), options, placement)
            runtimes[(kept_heads, kept_neurons)] = runtime
        for runtime in runtimes.values():  # warm-up: first-call allocations and compilation
            runtime.infer(inputs)
        times: dict[tuple[int, int], list[float]] = {key: [] for key in runtimes}
        meter = OtherLoadMeter()
        for _ in range(rounds):
            for key, runtime in runtimes.items():
                start = time.perf_counter()
                for _ in range(3):
                    runtime.infer(inputs)
                times[key].append((time.perf_counter() - start) / 3 * 1000)
        other = meter.cores()
    measured = {key: statistics.median(values) for key, values in times.items()}
    facts = {**parts, "rounds": rounds, "spread_ms": {f"{h},{n}": [min(v), max(v)] for (h, n), v in times.items()}}
    facts["other_cores"] = other
    return fit_table(measured, config.num_hidden_layers, heads, neurons, facts), other


def _inputs(vocab: int, batch: int, window: int, generator: torch.Generator) -> dict[str, np.ndarray]:
    """A batch of `batch` windows of `window` tokens, no padding (the table prices real tokens)."""
    ids = torch.randint(1000, max(1001, vocab - 1), (batch, window), generator=generator).numpy()
    types = np.zeros_like(ids)
    types[:, window // 2 :] = 1
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": types}
