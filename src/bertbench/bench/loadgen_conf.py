"""MLPerf's config files (`mlperf.conf`, `user.conf`, `audit.config`): lines `model.scenario.key = value`, read by
LoadGen itself (`TestSettings.FromConfig`). LoadGen ignores a key it does not know and reports a bad line only as
an error count; here every file is checked first, so that a typo is one line naming the file, the line and the key.

LoadGen 6 carries MLPerf's mlperf.conf built in and reads it whenever it reads a user.conf (and only then are the
seeds MLPerf's); a second conf file makes it log "Multiple conf files are used. This is not valid for official
submission". So a test is handed exactly one user.conf (`user_conf_text`): the lines of the user's files as given,
then the settings of the command line and bertbench's scaled defaults, which come later and so win (LoadGen keeps
the last of equal keys, and a `bert.Scenario.key` over any wildcard).
"""

from __future__ import annotations

from pathlib import Path

from bertbench.errors import UsageError

MLPERF_MODEL = "bert"  # the model name MLPerf's files use for BERT
SCENARIO_NAMES = ("SingleStream", "MultiStream", "Server", "Offline")
# The keys LoadGen reads from these files (TestSettings::FromConfig).
KNOWN_KEYS = frozenset(
    {
        "mode",
        "min_duration",
        "max_duration",
        "target_duration",
        "min_query_count",
        "max_query_count",
        "qsl_rng_seed",
        "sample_index_rng_seed",
        "schedule_rng_seed",
        "accuracy_log_rng_seed",
        "accuracy_log_probability",
        "accuracy_log_sampling_target",
        "print_timestamps",
        "performance_issue_unique",
        "performance_issue_same",
        "performance_issue_same_index",
        "performance_sample_count_override",
        "accuracy_sample_count_override",
        "sample_concatenate_permutation",
        "target_latency_percentile",
        "target_latency",
        "target_qps",
        "samples_per_query",
        "max_async_queries",
        "coalesce_queries",
        "test05",
        "test05_qsl_rng_seed",
        "test05_sample_index_rng_seed",
        "test05_schedule_rng_seed",
        "use_token_latencies",
        "ttft_latency",
        "tpot_latency",
        "infer_token_latencies",
        "token_latency_scaling_factor",
    }
)


def _number(text: str) -> float | None:
    try:
        return float(int(text, 0))
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def read_conf(path: Path, scenario: str) -> dict[str, float]:
    """The keys of `path` that apply to BERT in `scenario` (LoadGen's name), most specific entry first
    (`bert.Offline.k`, `*.Offline.k`, `bert.*.k`, `*.*.k`); UsageError naming the file, line and key for a line
    LoadGen would reject or ignore."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the config file ({exc})") from None
    entries: dict[tuple[str, str, str], float] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        where = f"{path}: line {number}"
        if not equals or not key or not value or " " in key or " " in value:
            raise UsageError(f"{where}: expected 'model.scenario.key = value', got {raw.strip()!r}")
        parts = key.split(".")
        if len(parts) != 3:
            raise UsageError(f"{where}: key {key!r} is not model.scenario.key")
        model, where_scenario, name = parts
        if where_scenario not in (*SCENARIO_NAMES, "*"):
            raise UsageError(f"{where}: key {key!r}: unknown scenario {where_scenario!r} ({', '.join(SCENARIO_NAMES)})")
        if name not in KNOWN_KEYS:
            raise UsageError(f"{where}: key {key!r}: LoadGen has no setting {name!r}")
        parsed = _number(value)
        if parsed is None:
            raise UsageError(f"{where}: key {key!r}: value {value!r} is not a number")
        entries[(model, where_scenario, name)] = parsed
    found: dict[str, float] = {}
    for name in KNOWN_KEYS:
        for model, where_scenario in ((MLPERF_MODEL, scenario), ("*", scenario), (MLPERF_MODEL, "*"), ("*", "*")):
            if (model, where_scenario, name) in entries:
                found[name] = entries[(model, where_scenario, name)]
                break
    return found


def user_conf_text(
    scenario: str, settings: dict[str, float | int], user_conf: Path | None = None, mlperf_conf: Path | None = None
) -> str:
    """A user.conf for a test of `scenario` (LoadGen's name): the lines of --mlperf-conf
    (LoadGen reads its built-in mlperf.conf before any user.conf, so a given one can only come after it; seeds in a
    user.conf are ignored by LoadGen), then the user's file as written, then `settings` (LoadGen's key names:
    min_duration in ms, target_latency in ms, …) for BERT in this scenario."""
    lines = ["# A test's settings as LoadGen reads them: its built-in mlperf.conf, then these lines."]
    for given in (mlperf_conf, user_conf):
        if given is not None:
            lines += [f"# from {given}:", *Path(given).read_text(encoding="utf-8").splitlines()]
    lines.append("# from the command line (and bertbench's defaults, scaled to a small machine):")
    for key, value in settings.items():
        text = str(int(value)) if float(value).is_integer() else repr(float(value))
        lines.append(f"{MLPERF_MODEL}.{scenario}.{key} = {text}")
    return "\n".join(lines) + "\n"
