"""Shared fixtures: an in-process command line (`cli`), and the log level reset after each test."""

from __future__ import annotations

import fcntl
import os

import pytest

from coqui_stt_training import train
from coqui_stt_training.system import log
from tests.helpers import ALPHABET, LDC, README_FLAGS, run

# Bytes output mode (256 classes) needs a wider model and more epochs than the characters' to learn LDC93S1.
BYTES_FLAGS = ["--bytes_output_mode", "true", "--n_hidden", "200", "--epochs", "600", "--learning_rate", "0.001",
               "--dropout_rate", "0", "--show_progressbar", "false"]  # fmt: skip


@pytest.fixture(autouse=True)
def _log_level_back_to_info():
    """Entry points set the process's log level from --log_level; the next test starts from Coqui's default."""
    yield
    log.set_level(log.INFO)


@pytest.fixture
def cli(capsys):
    """cli(main, argv) runs an entry point as `python -m` would, in this process: (exit status, output)."""
    return lambda main, argv: run(main, argv, capsys)


def trained_ldc_model(tmp_path_factory, name: str, flags: list[str]) -> tuple[str, str]:
    """(checkpoint directory, export directory) of a model trained once per test run: pytest-xdist's workers
    share it through their common temporary folder (the first to need it trains it, the others wait for it),
    where each worker's session fixture would otherwise train its own."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this run's folder, above each worker's own
    root = shared / name
    root.mkdir(exist_ok=True)
    ckpt, out = str(root / "ckpt"), str(root / "model")
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").exists():
            argv = [*flags, "--train_files", LDC, "--dev_files", LDC, "--checkpoint_dir", ckpt, "--export_dir", out,
                    "--export_onnx", "true", "--log_level", "2"]  # fmt: skip
            train.main(argv)  # a failure exits, and the tests using it err
            log.set_level(log.INFO)
            (root / "done").touch()
    return ckpt, out


@pytest.fixture(scope="session")
def ldc_model(tmp_path_factory) -> tuple[str, str]:
    """The README's LDC93S1 model, trained once for the tests that check it (read only): its checkpoint
    directory and its --export_dir (TFLite and ONNX)."""
    return trained_ldc_model(tmp_path_factory, "ldc93s1", ["--alphabet_config_path", ALPHABET, *README_FLAGS])


@pytest.fixture(scope="session")
def bytes_ldc_model(tmp_path_factory) -> tuple[str, str]:
    """A bytes-output-mode LDC93S1 model, trained once as ldc_model is."""
    return trained_ldc_model(tmp_path_factory, "bytes-ldc93s1", BYTES_FLAGS)
