"""Training, as Coqui STT 1.4's `python -m coqui_stt_training.train`.

    python -m coqui_stt_training.train --alphabet_config_path data/alphabet.txt \\
        --train_files train.csv --dev_files dev.csv --test_files test.csv --checkpoint_dir ckpt/

Everything that can be checked before training is checked first: flags, alphabet, every CSV row and
its audio, the checkpoint to load, the save and export directories. Then the training loop
(training/trainer.py), starting where training/start.py decides. With --test_files the run ends by testing its own
best checkpoint; --export_dir and --one_shot_infer use that checkpoint too.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from .data.samples import DataError
from .decoding.transcription import one_shot_infer
from .exports.directory import ExportSettings, ExportTargets, export, export_targets
from .feeding.augment import parse_augmentations
from .feeding.augment_audio import check_overlay_sources
from .feeding.rehearsal import TrainingSet
from .flags.cli import run_cli
from .flags.config import TRAIN_FLAGS, Config
from .flags.options import decode_options, export_settings, feature_settings, training_settings
from .flags.python_api import run_library_call
from .flags.services import data_set, model_for, resolve_alphabet, scorer_for, test_phase
from .model.alphabet import AnyAlphabet
from .system import log
from .system.atomic_files import require_writable, write_text_once
from .system.distributed import World, joined_world
from .system.errors import ConfigError
from .system.signals import Interrupted, phase
from .training.lock import training_lock
from .training.start import choose
from .training.step_memory import fit_training_batches, memory_bound
from .training.trainer import DataSets, Trainer


@dataclass(frozen=True)
class CheckedData:
    """Every data set a run reads, read and checked before its first step."""

    train: TrainingSet  # with the rehearsal samples, if any
    dev: DataSets
    metrics: DataSets
    test: DataSets  # empty when the run does not test


def train_job(config: Config, then_test: bool = True) -> None:
    """The command line's run: check everything, train, then (with `then_test`) test, export and transcribe
    as flagged."""
    with joined_world(config.log_level) as world:
        if not config.train_files:
            log.warn("Calling training module without --train_files.")
        elif not config.save_checkpoint_dir:
            raise ConfigError("Missing checkpoint directory (--checkpoint_dir or --save_checkpoint_dir)")
        alphabet = resolve_alphabet(config)
        data = check_data(config, alphabet, world, then_test)
        # Coqui's train also exports with --export_dir: its target is checked now, not after the training.
        exporting = export_settings(config)
        targets = export_targets(exporting) if then_test and config.export_dir and world.is_main else None
        if config.train_files and not train_model(config, alphabet, world, data):
            return  # stopped by a signal, the log has said what was kept
        if then_test and (config.test_files or config.export_dir or config.one_shot_infer):
            test_export_transcribe(config, world, data.test, exporting, targets)


def check_data(config: Config, alphabet: AnyAlphabet, world: World, then_test: bool) -> CheckedData:
    """Every data set, read and checked before the first step (a bad row found in epoch 40 wastes a day),
    and every training batch's memory estimated from its lengths (training/step_memory.py)."""
    with phase("while checking the data", "nothing was written. Run the same command again to start"):
        if config.train_files:
            check_overlay_sources(parse_augmentations(config.augment))
        train_set = data_set(config, config.train_files, alphabet, "train") if config.train_files else []
        rehearsal = data_set(config, config.rehearsal_files, alphabet, "rehearsal") if config.rehearsal_files else []
        dev_sets = [(p, data_set(config, [p], alphabet, "dev")) for p in config.dev_files or []]
        metrics_sets = [(p, data_set(config, [p], alphabet, "metrics")) for p in config.metrics_files or []]
        test_sets = [(p, data_set(config, [p], alphabet, "test")) for p in config.test_files or [] if then_test]
        limit, limit_name = memory_bound(config.max_batch_memory, world.device())
        fit = lambda samples, kind: fit_training_batches(
            samples,
            config.train_batch_size,
            config.n_hidden,
            alphabet.size + 1,
            limit,
            config.skip_invalid_samples,
            kind,
            limit_name,
        )
        train_set = fit(train_set, "train") if train_set else []
        rehearsal = fit(rehearsal, "rehearsal") if rehearsal else []
    if config.train_files and len(train_set) < config.train_batch_size * world.size:
        raise DataError(
            f"--train_files has {len(train_set)} samples, fewer than one batch of "
            f"--train_batch_size {config.train_batch_size}"
            + (f" times {world.size} processes" if world.distributed else "")
        )
    training = TrainingSet(train_set, rehearsal, config.rehearsal_fraction)
    if training.drawn_per_epoch:
        log.info(
            f"Rehearsal: each epoch trains on the {len(train_set)} samples of --train_files and "
            f"{training.drawn_per_epoch} drawn afresh from the {len(rehearsal)} of --rehearsal_files"
        )
    return CheckedData(training, dev_sets, metrics_sets, test_sets)


def train_model(config: Config, alphabet: AnyAlphabet, world: World, data: CheckedData) -> bool:
    """The training, from where training/start.py decides; False if a stop signal ended it (after saving)."""
    if world.distributed:
        log.info(
            f"Distributed training: {world.size} processes, global batch {config.train_batch_size * world.size} "
            f"(--train_batch_size {config.train_batch_size} each)"
        )
    save_dir = config.save_checkpoint_dir
    trainer = Trainer(training_settings(config), alphabet, world)
    try:
        before = phase("before the first training step", "no checkpoint was written. Run the same command again")
        with contextlib.ExitStack() as held:
            held.enter_context(before)
            # Reading first: a run refused here (another alphabet, a damaged source) has written nothing.
            start, save_serial = choose(
                config.load_checkpoint_dir,
                save_dir,
                config.load_train,
                config.drop_source_layers,
                config.epochs,
                alphabet,
            )
            trainer.begin(start, save_serial)
            if world.is_main:
                # the checkpoint and summary directories, before the first step rather than at the first save
                require_writable(save_dir, f"cannot write to the checkpoint directory {save_dir}")
                if config.summary_dir:
                    require_writable(config.summary_dir, f"--summary_dir {config.summary_dir}: cannot write there")
                held.enter_context(training_lock(save_dir))
                write_text_once(os.path.join(save_dir, "flags.txt"), config.to_json())
                if not alphabet.is_bytes:
                    write_text_once(os.path.join(save_dir, "alphabet.txt"), alphabet.serialize_text())
            trainer.train(data.train, data.dev, data.metrics)
    except Interrupted as stop:
        p = trainer.progress
        log.info(
            f"Stopped on {stop.signal_name} at epoch {p.epoch}"
            + (f", batch {p.batch}" if p.stage == "train" else "")
            + (f"; checkpoint saved to {stop.saved}" if stop.saved else "; nothing was trained yet")
            + ". Run the same command again to resume."
        )
        return False
    finally:
        trainer.close()
    return True


def test_export_transcribe(
    config: Config, world: World, test_sets: DataSets, exporting: ExportSettings, targets: ExportTargets | None
) -> None:
    """Test, export and transcribe what this run produced (its save directory), never the checkpoint it
    started from; the model is loaded once for all three."""
    world.barrier()  # after rank 0's last write
    kept = "python -m coqui_stt_training.evaluate (or .export) with the same flags does the rest"
    if config.train_files:
        kept = f"the training had finished and its checkpoints are in {config.save_checkpoint_dir}; {kept}"
    with phase("while testing or exporting", kept):
        loaded = model_for(config, config.save_checkpoint_dir or config.load_checkpoint_dir, world)
        if config.test_files:
            test_phase(config, loaded, test_sets, world)
        if targets:
            export(exporting, loaded.model, loaded.alphabet, targets)
        if config.one_shot_infer and world.is_main:
            options = decode_options(config, config.beam_width)
            scorer = scorer_for(config, loaded.alphabet)
            print(one_shot_infer(config.one_shot_infer, loaded, feature_settings(config), options, scorer), flush=True)


def train() -> None:
    """Coqui's Python API: train with the process-wide configuration (util.config's
    initialize_globals_from_args). As Coqui's train(), it only trains: test() tests."""
    run_library_call(lambda config: train_job(config, then_test=False))


def main(argv: list[str] | None = None) -> None:
    run_cli(train_job, argv, "python -m coqui_stt_training.train", TRAIN_FLAGS)


if __name__ == "__main__":
    main()
