"""MLPerf Inference's submission layout, filled from bertbench's runs: which runs may go in (a VALID, quiet
performance run beside an accuracy run of the same configuration), the benchmark name, the system description
from our environment record, and the settings file LoadGen would read to repeat a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bertbench.results.environment import library_versions
from bertbench.results.identity import identity_key

MLPERF_F1 = 90.874  # MLPerf's reference BERT-Large FP32 F1 on SQuAD v1.1 dev
SCENARIO_DIRS = {"offline": "Offline", "server": "Server", "singlestream": "SingleStream", "multistream": "MultiStream"}
# MLPerf's system-description fields (submission rules), and what bertbench's environment record can fill.
SYSTEM_FIELDS = (
    "division",
    "submitter",
    "status",
    "system_name",
    "system_type",
    "system_type_detail",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_processor_vcpu_count",
    "host_processor_frequency",
    "host_processor_caches",
    "host_processor_interconnect",
    "host_memory_capacity",
    "host_memory_configuration",
    "host_storage_type",
    "host_storage_capacity",
    "host_networking",
    "host_networking_topology",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_frequency",
    "accelerator_host_interconnect",
    "accelerator_interconnect",
    "accelerator_interconnect_topology",
    "accelerator_memory_capacity",
    "accelerator_memory_configuration",
    "accelerator_on-chip_memories",
    "cooling",
    "hw_notes",
    "framework",
    "operating_system",
    "other_software_stack",
    "sw_notes",
)


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


def choose(runs: list[dict[str, Any]]) -> tuple[list[Entry], list[str]]:
    """The newest exportable pair of every configuration, and one reason for every performance run left out."""
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
        reason = None
        if run.get("task") != "squad":
            reason = f"task {run.get('task')} is no MLPerf Inference benchmark (BERT is SQuAD)"
        elif run.get("random_weights"):
            reason = "random weights: there is no accuracy to submit"
        elif run.get("flops_fraction") is not None:
            reason = "a pruned model: MLPerf's closed division runs the reference model's architecture"
        elif run.get("result_valid") is not True:
            reason = "LoadGen judged it INVALID: " + "; ".join(run.get("result_invalid_reasons") or [])
        elif run.get("contended") is not False:
            reason = "it was timed on a contended machine (or without the quiet check)"
        elif pair_key(run) not in accuracy:
            reason = "no accuracy-mode run of the same configuration (bench --mode accuracy, MLPerf's answer text)"
        if reason:
            refused.append(f"{name} ({run.get('uid', '?')[:8]}): {reason}")
            continue
        entries[pair_key(run)] = Entry(run, accuracy[pair_key(run)])
    return list(entries.values()), refused


def system_description(run: dict[str, Any], division: str, submitter: str, system: str) -> tuple[dict, list[str]]:
    """MLPerf's system description from a run's environment record; the fields it cannot know stay empty, and are
    listed."""
    library_keys = library_versions()  # the names only: the versions are the run's
    libraries = {k.removesuffix("_version"): run[k] for k in library_keys if run.get(k)}
    known = {
        "division": division,
        "submitter": submitter,
        "status": "Research, Development, or Internal (RDI)",
        "system_name": system,
        "number_of_nodes": 1,
        "host_processor_model_name": run.get("cpu_model"),
        "host_processors_per_node": 1,
        "host_processor_core_count": run.get("physical_cores"),
        "host_processor_vcpu_count": run.get("cpu_count"),
        "host_memory_capacity": f"{run['memory_gib']} GiB" if run.get("memory_gib") else None,
        "accelerators_per_node": int(run.get("gpu_count") or 0),
        "accelerator_model_name": run.get("gpu_model") or "N/A",
        "framework": f"bertbench {libraries.get('bertbench', '')} ({run.get('backend')})".strip(),
        "operating_system": run.get("platform"),
        "other_software_stack": ", ".join(f"{k} {v}" for k, v in sorted(libraries.items()) if k != "bertbench"),
        "sw_notes": f"bertbench git {run.get('git_sha')}; ISA: "
        + ", ".join(k.removeprefix("isa_") for k, v in sorted(run.items()) if k.startswith("isa_") and v),
    }
    description = {name: known.get(name, "") for name in SYSTEM_FIELDS}
    description = {k: ("" if v is None else v) for k, v in description.items()}
    unknown = [name for name, value in description.items() if value == ""]
    return description, unknown


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
