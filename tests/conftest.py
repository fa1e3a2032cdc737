"""Shared fixtures: an in-process command line (`cli`), and one small LDC93S1 model trained once per session."""

from __future__ import annotations

import os

import pytest

from coqui_stt_training import log
from tests.helpers import ALPHABET, LDC, run


@pytest.fixture(autouse=True)
def _log_level_back_to_info():
    """Entry points set the process's log level from --log_level; the next test starts from Coqui's default."""
    yield
    log.set_level(log.INFO)


@pytest.fixture
def cli(capsys):
    """cli(main, argv) runs an entry point as `python -m` would, in this process: (exit status, output)."""
    return lambda main, argv: run(main, argv, capsys)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A checkpoint directory of a 32-unit model trained for 12 epochs on LDC93S1 (too small to transcribe
    well; enough for tests of loading, exporting and reporting)."""
    from coqui_stt_training import train

    directory = str(tmp_path_factory.mktemp("tiny") / "ckpt")
    argv = [
        "--alphabet_config_path",
        ALPHABET,
        "--n_hidden",
        "32",
        "--show_progressbar",
        "false",
        "--train_files",
        LDC,
        "--dev_files",
        LDC,
        "--epochs",
        "12",
        "--learning_rate",
        "0.005",
        "--checkpoint_dir",
        directory,
    ]
    try:
        train.main(argv)
    except SystemExit as e:
        raise AssertionError(f"training the session's tiny model failed: exit {e.code}") from None
    assert os.path.isfile(os.path.join(directory, "best_dev_checkpoint"))
    return directory
