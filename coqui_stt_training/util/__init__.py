"""Coqui STT's `coqui_stt_training.util` modules that its notebooks and scripts import, over our own."""
