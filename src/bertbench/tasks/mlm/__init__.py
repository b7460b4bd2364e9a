"""Masked-LM pretraining and evaluation (the MLPerf Training BERT benchmark, at small scale)."""
