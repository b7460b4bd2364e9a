"""Jobs: the library functions behind each CLI command (evaluate, fine-tune, …)."""
