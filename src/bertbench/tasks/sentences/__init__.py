"""Sentence and sentence-pair classification and regression: TNEWS and GLUE MRPC, RTE, STS-B."""
