"""Shared fixtures: an in-process command line (`cli`), and the log level reset after each test."""

from __future__ import annotations

import pytest

from coqui_stt_training import log
from tests.helpers import run


@pytest.fixture(autouse=True)
def _log_level_back_to_info():
    """Entry points set the process's log level from --log_level; the next test starts from Coqui's default."""
    yield
    log.set_level(log.INFO)


@pytest.fixture
def cli(capsys):
    """cli(main, argv) runs an entry point as `python -m` would, in this process: (exit status, output)."""
    return lambda main, argv: run(main, argv, capsys)
