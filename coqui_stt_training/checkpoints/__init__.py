"""Checkpoint directories: Coqui's layout, loading into a model, exports read back."""
