"""The training loop and what decides where a run starts."""
