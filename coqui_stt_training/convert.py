"""Convert a checkpoint directory between our format and Coqui's TensorFlow V2 format, or an exported model
(.tflite, .pb) into a checkpoint directory.

    python -m coqui_stt_training.convert --load_checkpoint_dir runs/ru --save_checkpoint_dir coqui/ru \\
        --checkpoint_format tf
    python -m coqui_stt_training.convert --load_checkpoint_dir model.tflite --save_checkpoint_dir ckpt/

Every checkpoint the source's state files name (`checkpoint`, `best_dev_checkpoint`) is rewritten
tensor by tensor under the same step, the state files are written last in the same order, and the
alphabet, flags and run state come along. A TF directory made this way is what Coqui STT 1.4 writes
(byte for byte, for the same tensors), so Coqui's evaluate, export and native tooling read it. The
other way (`--checkpoint_format safetensors`) turns a Coqui directory into ours, which then loads
without CRC-checking every byte. An export becomes `train-0`: its weights, zero Adam moments, no learning
rate (the next run takes --learning_rate), with its alphabet.txt and a flags.txt of its n_hidden, sample
rate and feature window. The destination must not hold checkpoints already.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping

import numpy as np

from .checkpoints.flags_txt import read_flags_file
from .checkpoints.from_export import as_checkpoint, open_exported
from .checkpoints.layout import TensorReader
from .checkpoints.store import STATE_FILES, CheckpointError, open_checkpoint, source_export_file, write_safetensors
from .flags.cli import run_cli
from .flags.config import CONVERT_FLAGS, COQUI_FLAG_COUNT, Config
from .formats.tf_bundle import write_tf_checkpoint
from .formats.tf_state_file import read_state_file, read_state_file_all, write_state_file
from .system import log
from .system.atomic_files import copy_atomically, write_text_once
from .system.errors import ConfigError


class LazyTensors(Mapping[str, np.ndarray]):
    """A read-only mapping over a checkpoint that reads each tensor only when the writer asks for it."""

    def __init__(self, reader: TensorReader):
        self.reader = reader

    def __iter__(self) -> Iterator[str]:
        return iter(self.reader.names())

    def __len__(self) -> int:
        return len(self.reader.names())

    def __getitem__(self, name: str) -> np.ndarray:
        return self.reader.get(name)


def convert_checkpoint(reader: TensorReader, source_prefix: str, target_prefix: str, checkpoint_format: str) -> int:
    """Rewrite one checkpoint (`reader` is open on `source_prefix`); return its number of tensors."""
    if checkpoint_format == "tf":
        write_tf_checkpoint(target_prefix, LazyTensors(reader))
    else:  # safetensors serialises from one dict; a checkpoint is read whole once
        tensors = {name: np.require(reader.get(name), requirements="C") for name in reader.names()}
        write_safetensors(target_prefix + ".safetensors", tensors)
    copy_atomically(source_prefix + ".json", target_prefix + ".json")
    return len(reader.names())


def coqui_flags(source_dir: str, n_hidden: int) -> str:
    """flags.txt as Coqui writes it: its 96 flags in its order (ours come after them and are left out)."""
    path = os.path.join(source_dir, "flags.txt")
    flags = dataclasses.asdict(Config(n_hidden=n_hidden))
    source_flags = read_flags_file(source_dir)
    if source_flags is not None:
        flags.update(source_flags)
    elif os.path.isfile(path):
        log.warn(f"{path} is not JSON (an old checkpoint?); writing default flags with n_hidden {n_hidden}")
    return _coqui_json(flags)


def _coqui_json(flags: dict) -> str:
    names = [f.name for f in dataclasses.fields(Config)][:COQUI_FLAG_COUNT]
    return json.dumps({name: flags[name] for name in names}, indent=2)


def check_target(source: str, target_dir: str) -> None:
    if os.path.realpath(source) == os.path.realpath(target_dir):
        raise ConfigError("--save_checkpoint_dir must differ from --load_checkpoint_dir")
    present = [name for name in STATE_FILES.values() if os.path.exists(os.path.join(target_dir, name))]
    if present:
        raise ConfigError(
            f"{target_dir} already holds checkpoints ({', '.join(present)}); convert into a new "
            "directory, nothing is overwritten"
        )


def convert_exported(path: str, target_dir: str, checkpoint_format: str, beta1: float, beta2: float) -> str:
    """An exported model as a checkpoint directory (see the module's docstring); returns the prefix."""
    check_target(path, target_dir)
    model = open_exported(path)
    alphabet = model.alphabet()
    meta = model.metadata
    flags = Config(
        n_hidden=model.n_hidden,
        audio_sample_rate=meta.sample_rate,
        feature_win_len=meta.win_len_ms,
        feature_win_step=meta.win_step_ms,
        bytes_output_mode=alphabet.is_bytes,
    )
    tensors = as_checkpoint(model, beta1, beta2)
    os.makedirs(target_dir, exist_ok=True)
    prefix = os.path.join(target_dir, "train-0")
    if checkpoint_format == "tf":
        write_tf_checkpoint(prefix, tensors)
    else:
        write_safetensors(prefix + ".safetensors", tensors)
    if not alphabet.is_bytes:
        write_text_once(os.path.join(target_dir, "alphabet.txt"), alphabet.serialize_text())
    write_text_once(os.path.join(target_dir, "flags.txt"), flags_text(flags, checkpoint_format))
    write_state_file(os.path.join(target_dir, STATE_FILES["train"]), prefix, [prefix])
    log.info(
        f"Wrote {prefix} ({len(tensors)} tensors) from the {model.kind} model {path}: n_hidden {model.n_hidden}, "
        f"{alphabet.size} labels, {meta.sample_rate} Hz; zero Adam moments and no learning rate (it has none)"
    )
    return prefix


def flags_text(config: Config, checkpoint_format: str) -> str:
    """flags.txt for a checkpoint written in `checkpoint_format`: Coqui's 96 flags for tf, all of ours else."""
    return _coqui_json(dataclasses.asdict(config)) if checkpoint_format == "tf" else config.to_json()


def convert_directory(source_dir: str, target_dir: str, checkpoint_format: str) -> list[str]:
    if not os.path.isdir(source_dir):
        raise ConfigError(f"Missing checkpoint directory {source_dir!r} (--load_checkpoint_dir)")
    check_target(source_dir, target_dir)
    plan = {}
    for kind, state_file in STATE_FILES.items():
        prefixes = read_state_file_all(os.path.join(source_dir, state_file))
        latest = read_state_file(os.path.join(source_dir, state_file))
        if latest and latest not in prefixes:
            prefixes.append(latest)
        present = [p for p in prefixes if os.path.isfile(p + ".safetensors") or os.path.isfile(p + ".index")]
        for prefix in sorted(set(prefixes) - set(present)):
            log.warn(f"{source_dir}/{state_file} names {prefix}, which is not there; skipped")
        # If the newest is gone (e.g. a release that ships only best_dev), the newest present one takes its place.
        plan[kind] = (present, latest if latest in present else (present[-1] if present else None))
    if not any(prefixes for prefixes, _ in plan.values()):
        raise CheckpointError(f"{source_dir}: no checkpoint named by its 'checkpoint' or 'best_dev_checkpoint' file")
    os.makedirs(target_dir, exist_ok=True)
    written, n_hidden = [], None
    for kind, (prefixes, latest) in plan.items():
        targets = []
        for prefix in prefixes:
            reader = open_checkpoint(prefix)
            if "layer_1/bias" not in reader:
                raise CheckpointError(f"{prefix}: no layer_1/bias; not a DeepSpeech checkpoint")
            n_hidden = n_hidden or reader.shape("layer_1/bias")[0]
            target = os.path.join(target_dir, os.path.basename(prefix))
            count = convert_checkpoint(reader, prefix, target, checkpoint_format)
            log.info(f"Wrote {target} ({count} tensors) from {prefix}")
            targets.append(target)
            written.append(target)
        if latest:  # the state file last: it names only checkpoints that are complete
            write_state_file(
                os.path.join(target_dir, STATE_FILES[kind]), os.path.join(target_dir, os.path.basename(latest)), targets
            )
    copy_atomically(os.path.join(source_dir, "alphabet.txt"), os.path.join(target_dir, "alphabet.txt"))
    if checkpoint_format == "tf":
        assert n_hidden is not None  # there was a checkpoint to convert
        write_text_once(os.path.join(target_dir, "flags.txt"), coqui_flags(source_dir, n_hidden))
    else:
        copy_atomically(os.path.join(source_dir, "flags.txt"), os.path.join(target_dir, "flags.txt"))
    return written


def convert_job(config: Config) -> None:
    if not config.load_checkpoint_dir or not config.save_checkpoint_dir:
        raise ConfigError(
            "Give the directory to convert (--load_checkpoint_dir) and a new one to write (--save_checkpoint_dir)"
        )
    source, target, checkpoint_format = config.load_checkpoint_dir, config.save_checkpoint_dir, config.checkpoint_format
    exported = source_export_file(source)
    if exported:
        convert_exported(exported, target, checkpoint_format, config.beta1, config.beta2)
        return
    written = convert_directory(source, target, checkpoint_format)
    log.info(f"Converted {len(written)} checkpoints to {config.checkpoint_format} in {config.save_checkpoint_dir}")


def main(argv: list[str] | None = None) -> None:
    run_cli(convert_job, argv, "python -m coqui_stt_training.convert", CONVERT_FLAGS)


if __name__ == "__main__":
    main()
