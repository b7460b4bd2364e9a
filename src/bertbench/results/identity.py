"""What makes two runs the same experiment, declared once: the fields of `RunIdentity`, each marked with its role.

Everything that asks "are these two runs the same experiment?" derives its answer from this declaration: the
store's `experiment` id, the report's regression check (the best earlier run of the same experiment), its
comparisons (runs paired that differ only along the compared key and what that key frees), the MLPerf export's
pairing of a performance run with its accuracy run (the same experiment but for the mode), and the params logged
to MLflow. Adding a field here adds it everywhere; a record carries it under the same name (flat, as in
metrics.json).

Roles:
- WORK: what is computed (task, model, data, shapes, precision, the command and its mode);
- PATH: how it is computed (backend, device, INT8 settings); comparing along one of them (or along precision)
  lets the other PATH fields differ too, since FP32 and INT8 of one model are often different paths;
- PLACEMENT: how the machine is used (instances, cores, threads);
- MACHINE: which machine; comparing along one of them lets PLACEMENT differ too (each machine uses its own cores).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

ROLE = "bertbench.identity.role"
FREES = "bertbench.identity.frees"
ABSENT = "bertbench.identity.absent"


class Role(StrEnum):
    """The part of a run's identity a field belongs to."""

    WORK = "work"
    PATH = "path"
    PLACEMENT = "placement"
    MACHINE = "machine"


# What a comparison along a field of each role lets differ besides that field.
FREED_BY_ROLE: dict[Role, tuple[Role, ...]] = {
    Role.WORK: (),
    Role.PATH: (Role.PATH,),
    Role.PLACEMENT: (),
    Role.MACHINE: (Role.MACHINE, Role.PLACEMENT),
}


def identity(role: Role, *, frees: tuple[Role, ...] | None = None, absent: Any = None) -> Any:
    """A field of the identity: its role, what comparing along it frees (default: by role), and the value a record
    that lacks it is taken to have (records made before the field was declared)."""
    freed = FREED_BY_ROLE[role] if frees is None else frees
    return dataclasses.field(default=None, metadata={ROLE: role, FREES: freed, ABSENT: absent})


@dataclass(frozen=True, kw_only=True)
class RunIdentity:
    """The fields that make a run a different experiment when they differ (None: the run has no such setting)."""

    command: str | None = identity(Role.WORK)
    mode: str | None = identity(Role.WORK)
    task: str | None = identity(Role.WORK)
    model: str | None = identity(Role.WORK)
    data_sha256: str | None = identity(Role.WORK)
    max_samples: int | None = identity(Role.WORK)
    max_seq_length: int | None = identity(Role.WORK)
    doc_stride: int | None = identity(Role.WORK)
    max_query_length: int | None = identity(Role.WORK)
    batch_size: int | None = identity(Role.WORK)
    padding: str | None = identity(Role.WORK)
    scenario: str | None = identity(Role.WORK)
    precision: str | None = identity(Role.WORK, frees=(Role.PATH,))
    backend: str | None = identity(Role.PATH)
    device: str | None = identity(Role.PATH)
    providers: tuple[str, ...] | None = identity(Role.PATH)
    quantization: str | None = identity(Role.PATH)
    per_channel: bool | None = identity(Role.PATH)
    reduce_range: bool | None = identity(Role.PATH)
    int8_weights: str | None = identity(Role.PATH)
    quantize_attention: bool | None = identity(Role.PATH)
    int8_activations: str | None = identity(Role.PATH)
    calibration_method: str | None = identity(Role.PATH)
    compiled: bool | None = identity(Role.PATH)
    instances: int | None = identity(Role.PLACEMENT)
    cores_per_instance: int | None = identity(Role.PLACEMENT)
    threads: int | None = identity(Role.PLACEMENT)
    hostname: str | None = identity(Role.MACHINE)
    cpu_model: str | None = identity(Role.MACHINE)
    cores_available: int | None = identity(Role.MACHINE)


def identity_fields() -> tuple[dataclasses.Field, ...]:
    """The declared fields (looked up at call time, so that one declaration serves every caller)."""
    return dataclasses.fields(RunIdentity)


def keys_with(*roles: Role) -> tuple[str, ...]:
    """The names of the identity fields of these roles, in declaration order."""
    return tuple(f.name for f in identity_fields() if f.metadata[ROLE] in roles)


def identity_keys() -> tuple[str, ...]:
    """Every identity field's name."""
    return tuple(f.name for f in identity_fields())


def identity_of(run: Mapping[str, Any]) -> dict[str, Any]:
    """The identity of a flat run (metrics.json, or a stored run's flat form): every declared field, absent ones
    as their declared `absent` value."""
    return {f.name: run.get(f.name, f.metadata[ABSENT]) for f in identity_fields()}


def identity_key(run: Mapping[str, Any], free: Iterable[str] = ()) -> str:
    """What must match for two runs to be the same experiment, as text; fields in `free` may differ."""
    skip = set(free)
    values = [[name, value] for name, value in identity_of(run).items() if name not in skip]
    return json.dumps(values, default=str, sort_keys=True)


def experiment_id(run: Mapping[str, Any]) -> str:
    """A short id of the run's experiment (equal for runs that are the same experiment)."""
    return hashlib.sha256(identity_key(run).encode()).hexdigest()[:12]


def freed_along(key: str) -> set[str]:
    """What a comparison along `key` lets differ: the key itself and the fields its declaration frees."""
    declared = {f.name: f for f in identity_fields()}
    if key not in declared:
        return {key}
    return {key, *keys_with(*declared[key].metadata[FREES])}


def declaration_signature() -> str:
    """A fingerprint of the declaration (field names, roles, absent values): a store recomputes its experiment ids
    when it changes."""
    parts = [[f.name, str(f.metadata[ROLE]), repr(f.metadata[ABSENT])] for f in identity_fields()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
