"""`bertbench build-corpus`: a pretraining corpus from SQuAD contexts and SST-2 sentences."""

from __future__ import annotations

from bertbench.configs import BuildCorpusConfig
from bertbench.console import info
from bertbench.jobs.common import check_new_file
from bertbench.results.record import RunRecord
from bertbench.tasks.mlm.corpus import build_corpus


def run_build_corpus(config: BuildCorpusConfig) -> RunRecord:
    """Write the corpus file; the record holds its document and sentence counts."""
    check_new_file(config.output, config.overwrite, inputs=(*config.squad, *config.sst2))
    counts = build_corpus(config.squad, config.sst2, config.output)
    info(f"wrote {config.output}: {counts['documents']} documents, {counts['sentences']} sentences")
    sources = {"squad": [str(p) for p in config.squad], "sst2": [str(p) for p in config.sst2]}
    return RunRecord("build-corpus", {**sources, "output": str(config.output)}, dict(counts))
