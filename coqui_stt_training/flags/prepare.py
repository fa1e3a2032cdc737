"""From the parsed flags to the values a tool runs with: Coqui's derived rules, what the source
checkpoint's flags.txt or exported model says, --auto_input_dataset's split, refusals, outputs that must be
writable now, and the process's thread counts. Every entry point goes through prepare() after parsing.
"""

from __future__ import annotations

import contextlib
import os

import torch

from ..checkpoints.flags_txt import read_flags_file
from ..data.auto_input import create_datasets
from ..feeding.augment import parse_augmentations
from ..system import log
from ..system.atomic_files import require_writable
from ..system.errors import ConfigError
from ..system.worker_pool import cpu_count
from .config import Config
from .options import parse_hot_words
from .services import source_export


def prepare(config: Config, given: frozenset[str] | None = None) -> Config:
    """Everything the command line derives from the flags before a tool runs: Coqui's rules, the source
    checkpoint's flags.txt, refusals, and the thread counts. `given`: the flags the user set (None: any may
    have been), so that only those are warned about."""
    config.finalize()
    if config.auto_input_dataset:
        split_auto_input(config)
    exported = source_export(config)
    if exported:
        config.adopt_source_flags(exported.source_flags(), features=True, given=given)
    else:
        config.adopt_source_flags(read_flags_file(config.load_checkpoint_dir), given=given)
    config.refuse_unsupported()
    parse_augmentations(config.augment)  # a bad --augment line stops the run before anything is read
    parse_hot_words(config.hot_words)  # and a malformed --hot_words list
    check_outputs(config)
    if config.train_cudnn or config.load_cudnn:
        log.info(
            "--train_cudnn/--load_cudnn are not needed: any checkpoint loads on CPU or GPU, and the "
            "LSTM uses cuDNN whenever it runs on a CUDA device"
        )
    apply_threads(config)
    return config


def split_auto_input(config: Config) -> None:
    """--auto_input_dataset: the train, dev and test sets (and the alphabet) made from one CSV."""
    if config.train_files or config.dev_files or config.test_files:
        raise ConfigError(
            "When using --auto_input_dataset, do not specify --train_files, --dev_files, or --test_files."
        )
    made = create_datasets(config.auto_input_dataset, config.alphabet_config_path, config.random_seed)
    config.train_files, config.dev_files, config.test_files = [made.train], [made.dev], [made.test]
    if not config.bytes_output_mode:
        config.alphabet_config_path = made.alphabet


def check_outputs(config: Config) -> None:
    """Outputs that would otherwise fail at the end of a long run, or quietly cost speed: the feature cache
    and --test_output_file's folder must be writable now. (Checkpoint and export directories are checked
    by the tools that write them.)"""
    if config.feature_cache:
        if os.path.exists(config.feature_cache) and not os.path.isdir(config.feature_cache):
            raise ConfigError(f"--feature_cache {config.feature_cache}: a file, not a directory")
        require_writable(config.feature_cache, f"--feature_cache {config.feature_cache}: cannot write there")
    if config.test_output_file:
        if os.path.isdir(config.test_output_file):
            raise ConfigError(f"--test_output_file {config.test_output_file}: a directory, not a file")
        folder = os.path.dirname(os.path.abspath(config.test_output_file))
        require_writable(folder, f"--test_output_file {config.test_output_file}: cannot write there")


def apply_threads(config: Config) -> None:
    """The flags' thread counts; by default no more intra-op threads than the CPUs this process may use
    (torch's own default counts the machine's cores, whatever a cgroup quota allows)."""
    if config.intra_op_parallelism_threads > 0:
        torch.set_num_threads(config.intra_op_parallelism_threads)
    elif cpu_count() < torch.get_num_threads():
        torch.set_num_threads(cpu_count())
    if config.inter_op_parallelism_threads > 0:
        with contextlib.suppress(RuntimeError):  # torch allows this only once per process, before parallel work
            torch.set_num_interop_threads(config.inter_op_parallelism_threads)
