"""SST-2 (GLUE) sentence classification."""
