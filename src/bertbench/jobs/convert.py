"""`bertbench convert`: a checkpoint the seeds start from, as a Hugging Face model directory."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bertbench.configs import ConvertConfig
from bertbench.console import info, warn
from bertbench.jobs.common import prepare_output_dir
from bertbench.models.convert import read_checked, says_cased, write_directory


def run_convert(config: ConvertConfig) -> None:
    """Read and check everything first; only then write the directory (conversion.json last)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bertbench-convert-") as unpacked:
        lower_case = not (config.cased or says_cased(config.src))
        checkpoint = read_checked(config.src, config.config, config.vocab, lower_case, Path(unpacked))
        output = prepare_output_dir(config.output_dir, overwrite=config.overwrite)
        write_directory(checkpoint, output, config.src)
    for note in checkpoint.notes:
        warn(note)
    shape = checkpoint.config
    info(
        f"wrote {output}: {checkpoint.architecture} from a {checkpoint.source_format} checkpoint, "
        f"{shape.num_hidden_layers} layers × {shape.hidden_size}, {len(checkpoint.tensors)} tensors, "
        f"{'lower-cased' if lower_case else 'cased'} vocabulary, in {time.perf_counter() - started:.1f} s"
    )
