"""One sample's outputs <-> bytes, for LoadGen's accuracy log, in MLPerf's own format so that MLPerf's scorers read
our logs: a SQuAD sample is its raw little-endian logits `[tokens, 2]` (start, end) in float32 — or float16, or
transposed `[2, tokens]`, as `accuracy-squad.py --output_dtype/--output_transposed` read them; an SST-2 sample is
its raw class logits `[2]`. The tokens are the window's real ones (MLPerf's scorer pads the rest with -10000)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertbench.choices import OUTPUT_DTYPES

# Per-token outputs are scattered into rows of max_seq_length; positions past a sample's length hold this.
PAD_LOGIT = -1e4
assert OUTPUT_DTYPES == ("float32", "float16"), "choices.OUTPUT_DTYPES and the codec disagree"


@dataclass(frozen=True)
class LogFormat:
    """How a sample's logits are laid out in the accuracy log."""

    dtype: str = "float32"
    transposed: bool = False  # [outputs, tokens] instead of [tokens, outputs]

    @property
    def numpy_dtype(self) -> np.dtype:
        """Little-endian, whatever this machine's order (MLPerf's scorer reads with numpy's native order on x86)."""
        return np.dtype(self.dtype).newbyteorder("<")


def encode_sample(
    outputs: dict[str, np.ndarray], names: tuple[str, ...], per_token: tuple[str, ...], fmt: LogFormat
) -> bytes:
    """A sample's outputs as the raw bytes MLPerf's SUTs log: per-token outputs side by side as columns (in the
    task's output order); otherwise the one output's values."""
    if per_token:
        columns = np.stack([np.asarray(outputs[name]) for name in names], axis=-1)  # [tokens, outputs]
        data = columns.T if fmt.transposed else columns
    else:
        data = np.concatenate([np.asarray(outputs[name]).reshape(-1) for name in names])
    return np.ascontiguousarray(data, dtype=fmt.numpy_dtype).tobytes()


def decode_sample(
    data: bytes, names: tuple[str, ...], per_token: tuple[str, ...], fmt: LogFormat, sizes: dict[str, int] | None = None
) -> dict[str, np.ndarray]:
    """The outputs encode_sample() wrote (as float32). `sizes` gives each non-per-token output's length when a task
    has several (one output takes all values)."""
    values = np.frombuffer(data, dtype=fmt.numpy_dtype).astype(np.float32)
    if per_token:
        if values.size % len(names):
            raise ValueError(f"{values.size} values are not {len(names)} per token")
        table = values.reshape(len(names), -1).T if fmt.transposed else values.reshape(-1, len(names))
        return {name: table[:, i].copy() for i, name in enumerate(names)}
    if len(names) == 1:
        return {names[0]: values}
    out, start = {}, 0
    for name in names:
        size = (sizes or {})[name]
        out[name] = values[start : start + size]
        start += size
    return out


def split_batch(
    outputs: dict[str, np.ndarray], lengths: np.ndarray, per_token: tuple[str, ...]
) -> list[dict[str, np.ndarray]]:
    """A batch's outputs -> one dict per sample (per-token outputs cut to the sample's real length)."""
    return [
        {name: value[i, : lengths[i]] if name in per_token else value[i] for name, value in outputs.items()}
        for i in range(len(lengths))
    ]


def assemble(
    samples: dict[int, dict[str, np.ndarray]], num_samples: int, max_seq_length: int, per_token: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Per-sample outputs (by QSL index) -> arrays in input order, as run_inference returns them."""
    if len(samples) != num_samples:
        raise ValueError(f"{len(samples)} samples in the accuracy log, {num_samples} expected")
    first = samples[0]
    outputs: dict[str, np.ndarray] = {}
    for name, value in first.items():
        if name in per_token:
            outputs[name] = np.full((num_samples, max_seq_length), PAD_LOGIT, dtype=np.float32)
        else:
            outputs[name] = np.zeros((num_samples, *value.shape), dtype=np.float32)
    for index, sample in samples.items():
        for name, value in sample.items():
            if name in per_token:
                if len(value) > max_seq_length:
                    raise ValueError(f"sample {index}: {len(value)} tokens, more than {max_seq_length}")
                outputs[name][index, : len(value)] = value
            else:
                outputs[name][index] = value
    return outputs
