"""Workloads: YAML files of test cases (`schema`: read, validate, expand) and their plan (`plan`: configs, command
lines, directories, fingerprints). The built-in workloads are the YAML files of this package."""

from bertbench.workloads.schema import Case, Workload, WorkloadError, builtin_names, load_workload

__all__ = ["Case", "Workload", "WorkloadError", "builtin_names", "load_workload"]
