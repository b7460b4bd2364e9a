"""Runtimes: prepare a model once, then infer(dict of numpy) -> dict of numpy. Runtimes know no timing.

`options` (what the user asks) and `registry` (backend name -> implementation) import nothing heavy; the
implementations (`torch_runtime`, `ort_runtime`) are imported when a run needs them.
"""
