"""One sample's outputs <-> bytes, for LoadGen's accuracy log (self-describing: names, dtypes and shapes travel
with the data, so the scorer needs nothing but the bytes)."""

from __future__ import annotations

import io

import numpy as np

# Per-token outputs are scattered into rows of max_seq_length; positions past a sample's length hold this.
PAD_LOGIT = -1e4


def encode_sample(outputs: dict[str, np.ndarray]) -> bytes:
    """A sample's named arrays as an uncompressed .npz byte string."""
    buffer = io.BytesIO()
    np.savez(buffer, **outputs)
    return buffer.getvalue()


def decode_sample(data: bytes) -> dict[str, np.ndarray]:
    """The arrays encode_sample() packed."""
    with np.load(io.BytesIO(data)) as arrays:
        return {name: arrays[name] for name in arrays.files}


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
            outputs[name] = np.full((num_samples, max_seq_length), PAD_LOGIT, dtype=value.dtype)
        else:
            outputs[name] = np.zeros((num_samples, *value.shape), dtype=value.dtype)
    for index, sample in samples.items():
        for name, value in sample.items():
            if name in per_token:
                outputs[name][index, : len(value)] = value
            else:
                outputs[name][index] = value
    return outputs
