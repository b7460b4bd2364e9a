"""Structured post-training pruning of attention heads and feed-forward neurons (Kwon et al., NeurIPS 2022):
Fisher importance on training data, a mask search under a FLOP budget, per-layer least-squares mask tuning."""
