"""Coqui STT / DeepSpeech training on PyTorch: the same commands, checkpoints and data formats."""

import os

# OpenMP threads that wait by sleeping rather than spinning (unless the user chose): on a shared machine a
# spinning thread whose core is busy with another process stalls every parallel region (the README's
# LDC93S1 job ran 2.4x slower beside one busy process; passive, 1.0x). It only works if set before torch
# starts OpenMP, that is before torch is imported: here, the first thing any entry point imports.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
