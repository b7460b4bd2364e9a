"""bertbench: fine-tune, pretrain, quantize, evaluate and benchmark BERT models."""

__version__ = "0.1.0"
