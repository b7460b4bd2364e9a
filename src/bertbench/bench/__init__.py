"""Timing harness: batching, warm-up, timed inference, scenarios. The only place that times a runtime."""
