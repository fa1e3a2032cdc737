"""Coqui STT / DeepSpeech training on PyTorch: the same commands, checkpoints and data formats."""

__version__ = "0.1.0"
