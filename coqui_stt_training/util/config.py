"""`from coqui_stt_training.util.config import initialize_globals_from_args, Config`, as in Coqui's notebooks
(flags/python_api.py does the work)."""

from ..flags.python_api import (
    GlobalConfig,
    initialize_globals_from_args,
    initialize_globals_from_cli,
    initialize_globals_from_instance,
)

Config = GlobalConfig()

__all__ = ["Config", "initialize_globals_from_args", "initialize_globals_from_cli", "initialize_globals_from_instance"]
