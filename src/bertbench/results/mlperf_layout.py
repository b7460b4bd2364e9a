"""MLPerf Inference's submission layout, filled from bertbench's runs, for the checker version that matches the
installed LoadGen (its seeds: v6.1): which runs may go in (a VALID, quiet performance run beside an accuracy run of
the same experiment, its compliance test passed when it ran one), the benchmark name, the system description from
the runs' environment records, the implementation's measurements.json and the accuracy.txt MLPerf's scorer prints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bertbench.results.environment import library_versions
from bertbench.results.identity import identity_key

MLPERF_F1 = 90.874  # MLPerf's reference BERT-Large FP32 F1 on SQuAD v1.1 dev
SCENARIO_DIRS = {"offline": "Offline", "server": "Server", "singlestream": "SingleStream", "multistream": "MultiStream"}
CHECKER_VERSION = "v6.1"  # the submission checker whose seeds the installed LoadGen (6.0.x) uses
# MLPerf's system-description fields (submission_checker/constants.py: SYSTEM_DESC_REQUIRED_FIELDS); the checker wants
# a non-empty value in all but the last nine.
SYSTEM_FIELDS = (
    "division",
    "submitter",
    "system_type",
    "status",
    "system_name",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_memory_capacity",
    "host_memory_configuration",
    "host_storage_capacity",
    "host_storage_type",
    "host_networking",
    "host_network_card_count",
    "host_networking_topology",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_memory_capacity",
    "accelerator_host_interconnect",
    "accelerator_memory_configuration",
    "accelerator_interconnect",
    "cooling",
    "framework",
    "operating_system",
    "other_software_stack",
    "host_processor_frequency",
    "host_processor_caches",
    "host_processor_interconnect",
    "accelerator_frequency",
    "accelerator_interconnect_topology",
    "accelerator_on-chip_memories",
    "hw_notes",
    "sw_notes",
    "system_type_detail",
)
MAY_BE_EMPTY = SYSTEM_FIELDS[-9:]
# What no machine can tell about itself: the user says it (export --system-facts FILE).
ONLY_THE_USER_KNOWS = ("host_memory_configuration", "host_networking_topology", "cooling")
STATUSES = ("available", "preview", "rdi")
SYSTEM_TYPES = ("edge", "datacenter", "datacenter,edge")


@dataclass
class Entry:
    """One exportable pair: a performance run and the accuracy run of the same configuration."""

    performance: dict[str, Any]
    accuracy: dict[str, Any]

    @property
    def benchmark(self) -> str:
        """bert-99.9 when the accuracy run's guard asked 99.9 % of FP32, else bert-99."""
        return "bert-99.9" if float(self.accuracy.get("accuracy_target") or 0.99) >= 0.999 else "bert-99"

    @property
    def scenario(self) -> str:
        """LoadGen's scenario name."""
        return SCENARIO_DIRS[str(self.performance["scenario"])]


def pair_key(run: dict[str, Any]) -> str:
    """What a performance run and its accuracy run must share: the whole experiment (results.identity) but the mode,
    the machine included."""
    return identity_key(run, free={"mode"})


def passed_test01(run: dict[str, Any]) -> bool:
    """A performance run whose TEST01 passed by MLCommons' rules (a bertbench from before them recorded no
    `compliance_mismatched_samples` and wrote another tree: its TEST01 is not MLCommons' and does not count)."""
    return (
        run.get("compliance_test") == "TEST01"
        and run.get("compliance_passed") is True
        and "compliance_mismatched_samples" in run
    )


def choose(runs: list[dict[str, Any]], division: str = "open") -> tuple[list[Entry], list[str]]:
    """For every configuration the performance run to submit (a TEST01 passed before none, then the newest) with its
    newest accuracy run, and one reason for every performance run left out."""
    accuracy: dict[str, dict[str, Any]] = {}
    for run in runs:
        scored_as_mlperf = run.get("answer_text") == "mlperf"  # accuracy.txt must be what MLPerf's scorer prints
        is_accuracy = run.get("command") == "bench" and run.get("mode") == "accuracy" and run.get("f1") is not None
        if is_accuracy and scored_as_mlperf:
            accuracy[pair_key(run)] = run  # the newest wins
    entries: dict[str, Entry] = {}
    refused: list[str] = []
    for run in runs:
        if run.get("command") != "bench" or run.get("mode") != "performance":
            continue
        name = " ".join(str(run.get(k)) for k in ("model", "backend", "precision", "scenario"))
        name += f" bs{run.get('batch_size')}"
        reason = _refusal(run, accuracy, division)
        key = pair_key(run)
        if reason is None and key in entries and passed_test01(entries[key].performance) > passed_test01(run):
            reason = "a run of the same configuration whose TEST01 passed goes in instead"
        if reason:
            refused.append(f"{name} ({run.get('uid', '?')[:8]}): {reason}")
            continue
        if key in entries:
            old = entries[key].performance
            refused.append(f"{name} ({old.get('uid', '?')[:8]}): a newer run of the same configuration goes in")
        entries[key] = Entry(run, accuracy[key])
    return list(entries.values()), refused


def _refusal(run: dict[str, Any], accuracy: dict[str, dict[str, Any]], division: str) -> str | None:
    """Why a performance run cannot go in, or None."""
    if run.get("task") != "squad":
        return f"task {run.get('task')} is no MLPerf Inference benchmark (BERT is SQuAD)"
    if run.get("random_weights"):
        return "random weights: there is no accuracy to submit"
    if run.get("flops_fraction") is not None:
        return "a pruned model: MLPerf's closed division runs the reference model's architecture"
    if run.get("result_valid") is not True:
        return "LoadGen judged it INVALID: " + "; ".join(run.get("result_invalid_reasons") or [])
    if run.get("contended") is not False:
        return "it was timed on a contended machine (or without the quiet check)"
    if run.get("compliance_test") and run.get("compliance_passed") is not True:
        return f"its {run['compliance_test']} compliance test failed"
    if division == "closed" and not passed_test01(run):  # MLPerf's closed division asks TEST01 of BERT
        return "the closed division needs a TEST01 that passed by MLCommons' rules (bench --compliance TEST01)"
    if pair_key(run) not in accuracy:
        return "no accuracy-mode run of the same configuration (bench --mode accuracy, MLPerf's answer text)"
    return None


def _gib(value: Any) -> str:
    return f"{value} GiB" if isinstance(value, int | float) else ""


def system_description(
    run: dict[str, Any], division: str, submitter: str, system: str, extra: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """MLPerf's system description from a run's environment record (what the machine tells), then the user's facts
    (`extra`: what no machine knows, or corrections); the required fields still empty are listed."""
    library_keys = library_versions()  # the names only: the versions are the run's
    libraries = {k.removesuffix("_version"): run[k] for k in library_keys if run.get(k)}
    gpus = int(run.get("gpu_count") or 0)
    mhz = run.get("cpu_max_mhz")
    nics = run.get("network_interface_count")
    known = {
        "division": division,
        "submitter": submitter,
        "system_type": "edge",
        "status": "rdi",
        "system_name": system,
        "number_of_nodes": "1",
        "host_processor_model_name": run.get("cpu_model"),
        "host_processors_per_node": str(run.get("cpu_sockets") or ""),
        "host_processor_core_count": str(run.get("physical_cores") or ""),
        "host_processor_frequency": f"{mhz} MHz" if mhz else "",
        "host_processor_caches": run.get("cpu_caches") or "",
        "host_memory_capacity": _gib(run.get("memory_gib")),
        "host_storage_capacity": _gib(run.get("storage_gib")),
        "host_storage_type": run.get("storage_type") or "",
        "host_networking": run.get("network_interfaces") or "",
        "host_network_card_count": str(nics) if nics is not None else "",
        # a CPU-only system: the checker wants the count as text, "0" (0 reads as empty, "N/A" breaks int())
        "accelerators_per_node": str(gpus),
        "accelerator_model_name": run.get("gpu_model") or "N/A",
        "accelerator_memory_capacity": "N/A" if not gpus else "",
        "accelerator_host_interconnect": "N/A" if not gpus else "",
        "accelerator_memory_configuration": "N/A" if not gpus else "",
        "accelerator_interconnect": "N/A" if not gpus else "",
        "framework": f"bertbench {libraries.get('bertbench', '')} ({run.get('backend')})".strip(),
        "operating_system": run.get("platform"),
        "other_software_stack": ", ".join(f"{k} {v}" for k, v in sorted(libraries.items()) if k != "bertbench"),
        "sw_notes": f"bertbench git {run.get('git_sha')}; ISA: "
        + ", ".join(k.removeprefix("isa_") for k, v in sorted(run.items()) if k.startswith("isa_") and v),
    }
    description = {name: known.get(name, "") for name in SYSTEM_FIELDS}
    description.update(extra or {})
    description = {k: ("" if v is None else v) for k, v in description.items()}
    missing = [name for name in SYSTEM_FIELDS if name not in MAY_BE_EMPTY and description.get(name) in ("", None)]
    return description, missing


def measurements(run: dict[str, Any]) -> dict[str, str]:
    """The implementation's measurements.json (every field the checker asks for, each non-empty)."""
    return {
        "input_data_types": "int64",
        "retraining": "no",
        "starting_weights_filename": str(run.get("model")),
        "weight_data_types": "int8" if run.get("precision") == "int8" else str(run.get("precision")),
        "weight_transformations": run.get("quantization_format") or "none",
    }


def accuracy_text(run: dict[str, Any]) -> str:
    """accuracy.txt as MLPerf's scorer prints it (evaluate_v1.1.py's JSON line), from the accuracy run's scores."""
    return json.dumps({"exact_match": float(run["exact_match"]), "f1": float(run["f1"])}) + "\n"


def user_conf(run: dict[str, Any]) -> str:
    """The settings LoadGen used, as a user.conf it reads to repeat the run."""
    settings = run.get("loadgen_settings") or {}
    scenario = SCENARIO_DIRS[str(run["scenario"])]
    names = {
        "target_qps": "target_qps",
        "min_duration_ms": "min_duration",
        "max_duration_ms": "max_duration",
        "min_query_count": "min_query_count",
        "max_query_count": "max_query_count",
        "samples_per_query": "samples_per_query",
        "performance_sample_count": "performance_sample_count_override",
    }
    lines = [f"# the settings LoadGen used for this run (bertbench {run.get('bertbench_version', '')})"]
    for key, name in names.items():
        if key in settings:
            lines.append(f"bert.{scenario}.{name} = {settings[key]}")
    if scenario in ("Server", "SingleStream", "MultiStream") and settings.get("target_latency_ns"):
        lines.append(f"bert.{scenario}.target_latency = {int(settings['target_latency_ns']) // 1_000_000}")
    return "\n".join(lines) + "\n"


def mlperf_target(run: dict[str, Any]) -> str | None:
    """Whether a SQuAD F1 clears MLPerf's absolute thresholds (99 % / 99.9 % of 90.874): said for a BERT-Large
    checkpoint (the shape of MLPerf's reference model: 24 layers, hidden 1024, 16 heads, trained weights), and
    "relative to own FP32" for any other model."""
    f1 = run.get("f1")
    if run.get("task") != "squad" or not isinstance(f1, int | float) or run.get("random_weights"):
        return None
    large = (run.get("num_layers"), run.get("hidden_size"), run.get("num_heads")) == (24, 1024, 16)
    if run.get("flops_fraction") is not None:  # a pruned model is not MLPerf's model
        return "relative to its unpruned parent"
    if not large:
        return "relative to own FP32"
    marks = [
        f"{name} {'yes' if f1 >= share * MLPERF_F1 else 'no'}"
        for name, share in (("bert-99", 0.99), ("bert-99.9", 0.999))
    ]
    return "MLPerf " + ", ".join(marks)
