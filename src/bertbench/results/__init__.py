"""Run records: environment capture, metrics.json, console tables. The only place that formats output."""
