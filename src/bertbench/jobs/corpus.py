"""`bertbench build-corpus`: a pretraining corpus from SQuAD contexts and SST-2 sentences."""

from __future__ import annotations

from bertbench.jobs.configs import BuildCorpusConfig
from bertbench.results.console import info
from bertbench.tasks.mlm.corpus import build_corpus


def run_build_corpus(config: BuildCorpusConfig) -> dict[str, int]:
    """Write the corpus file; returns its document and sentence counts."""
    counts = build_corpus(config.squad, config.sst2, config.output)
    info(f"wrote {config.output}: {counts['documents']} documents, {counts['sentences']} sentences")
    return counts
