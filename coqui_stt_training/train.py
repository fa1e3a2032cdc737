"""Training, as Coqui STT 1.4's `python -m coqui_stt_training.train` (spec §7).

    python -m coqui_stt_training.train --alphabet_config_path data/alphabet.txt \\
        --train_files train.csv --dev_files dev.csv --test_files test.csv --checkpoint_dir ckpt/

Everything that can be checked before training is checked first: flags, alphabet, every CSV row and
its audio, the checkpoint to load. Then epochs of training, each followed by a `train` checkpoint,
validation (and a `best_dev` checkpoint on improvement), early stopping and plateau handling, and
the metrics sets. With --test_files the run ends by testing its own best checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from datetime import timedelta

import torch
from tqdm import tqdm

from . import checkpoint, log
from .alphabet import AlphabetError, UTF8Alphabet, alphabet_from_transcripts, alphabet_record, load_alphabet
from .audio import AudioError
from .checkpoint import CheckpointError
from .config import Config, ConfigError
from .data import DataError, data_loader, load_data_set, make_batches, read_csv
from .decode import greedy_decode
from .distributed import World, close_world, init_world
from .evaluate import evaluate_samples, one_shot_infer, test, totals
from .export import export, export_paths
from .model import DeepSpeech, ctc_loss
from .optimizer import TFAdam
from .run_state import Interrupted, Progress, StopSignals, rng_state, set_rng_state
from .scorer import ScorerError
from .summary import SummaryWriter
from .tf_checkpoint import TFCheckpointError

USER_ERRORS = (
    ConfigError,
    DataError,
    AlphabetError,
    AudioError,
    CheckpointError,
    TFCheckpointError,
    ScorerError,
    NotImplementedError,
)


def run_cli(job, argv, prog: str) -> None:
    """Parse flags, run `job(config)`, and turn every user error into one line and exit status 1."""
    config = Config.from_args(argv, prog=prog)
    log.set_level(config.log_level)
    try:
        config.finalize()
        refused = config.unsupported_in_use()
        if refused:
            raise NotImplementedError(f"{', '.join(refused)}: not supported yet by this implementation")
        if config.train_cudnn or config.load_cudnn:
            log.info(
                "--train_cudnn/--load_cudnn are not needed: any checkpoint loads on CPU or GPU, and the "
                "LSTM uses cuDNN whenever it runs on a CUDA device"
            )
        job(config)
    except USER_ERRORS as e:
        log.error(str(e))
        sys.exit(1)


# ---- set-up shared with evaluate ---------------------------------------------------------------


def resolve_alphabet(config: Config):
    """Coqui's order (spec §5.4): bytes mode, the flag, the loaded checkpoint's, the data folder's, generated."""
    if config.bytes_output_mode:
        return UTF8Alphabet()
    if config.alphabet_config_path:
        return load_alphabet(config.alphabet_config_path)
    if config.load_checkpoint_dir:
        path = os.path.join(config.load_checkpoint_dir, "alphabet.txt")
        if os.path.isfile(path):
            log.info(f"Using alphabet from checkpoint directory: {path}")
            return load_alphabet(path)
    sets = [config.train_files, config.dev_files, config.test_files]
    if all(sets):
        folders = {os.path.dirname(os.path.abspath(p)) for files in sets for p in files}
        if len(folders) == 1 and os.path.isfile(path := os.path.join(folders.pop(), "alphabet.txt")):
            log.info(f"Using alphabet found next to the data: {path}")
            return load_alphabet(path)
        log.info("Generating the alphabet from the transcripts of the train, dev and test sets")
        return alphabet_from_transcripts(s.transcript for files in sets for p in files for s in read_csv(p))
    if config.load_checkpoint_dir and not os.path.isdir(config.load_checkpoint_dir):
        raise ConfigError(
            f"Missing checkpoint directory {config.load_checkpoint_dir!r} (--checkpoint_dir or --load_checkpoint_dir)"
        )
    raise ConfigError(
        "Missing --alphabet_config_path flag. Couldn't find an alphabet file alongside checkpoint, "
        "and input datasets are not fully specified (--train_files, --dev_files, --test_files), so "
        "can't generate an alphabet."
    )


def build_model(config: Config, alphabet, device: torch.device) -> tuple[DeepSpeech, TFAdam]:
    torch.manual_seed(config.random_seed)
    model = DeepSpeech(
        config.n_hidden,
        alphabet.size + 1,
        config.relu_clip,
        config.layer_norm,
        (config.dropout_rate, config.dropout_rate2, config.dropout_rate3, config.dropout_rate6),
    )
    model.reset_parameters(torch.Generator().manual_seed(config.random_seed))
    model.to(device)
    # One parameter group per layer, so that transfer learning can train kept layers at another rate.
    groups = [{"name": name, "params": params} for name, params in model.layer_parameters().items()]
    optimizer = TFAdam(groups, config.learning_rate, config.beta1, config.beta2, config.epsilon)
    return model, optimizer


def find_to_load(directory: str, method: str, quiet: bool = False) -> tuple[str | None, list[str]]:
    """Coqui's load order: auto = best, then last (then init, for training only)."""
    order = {"auto": ["best", "last"], "best": ["best"], "last": ["last"], "init": []}[method]
    tried = []
    for which in order:
        prefix = (
            checkpoint.find_checkpoint(directory, "best_dev" if which == "best" else "train") if directory else None
        )
        what = "best validating" if which == "best" else "most recent"
        if prefix:
            if not quiet:
                log.info(f"Loading {what} checkpoint from {prefix}")
            return prefix, tried
        if not quiet:
            log.info(f"Could not find {what} checkpoint.")
        tried.append(which)
    if directory:
        checkpoint.refuse_pickles(directory)
    return None, tried


def setup_evaluation(config: Config, directory: str, world: World = World()):
    """Model, alphabet and device for testing the checkpoint in `directory` (--load_evaluate)."""
    if not directory:
        raise ConfigError("Missing checkpoint directory (--checkpoint_dir or --load_checkpoint_dir)")
    if not os.path.isdir(directory):
        raise ConfigError(f"Missing checkpoint directory {directory!r} (--checkpoint_dir or --load_checkpoint_dir)")
    alphabet = resolve_alphabet(config)
    device = world.device()
    model, _ = build_model(config, alphabet, device)
    prefix, tried = find_to_load(directory, config.load_evaluate)
    if prefix is None:
        raise CheckpointError(f"All initialization methods failed ({tried}): no checkpoint in {directory}")
    checkpoint.check_alphabet(prefix, alphabet)
    checkpoint.load_into(prefix, model, None, config.learning_rate).log()
    return model, alphabet, device


# ---- training -----------------------------------------------------------------------------------


class Trainer:
    def __init__(self, config: Config, alphabet, world: World = World()):
        self.config, self.alphabet, self.world, self.device = config, alphabet, world, world.device()
        self.model, self.optimizer = build_model(config, alphabet, self.device)
        if world.rank:
            torch.manual_seed(config.random_seed + world.rank)  # same initial weights, other dropout masks
        self.network = self.model  # what training steps call: the model, or DDP around it
        self.wrap()
        self.global_step = 0
        self.best_dev_loss = float("inf")
        self.epochs_done = 0  # epochs since training from the source checkpoint began, over restarts
        self.transfer: dict | None = None  # how this run's model came from a source checkpoint
        self.source_layers: set[str] = set()
        self.progress = Progress()
        self.resumed_rng: dict | None = None  # generators to restore before the first resumed step
        self.save_serial = 0  # orders this directory's checkpoints: the highest is the newest
        self.last_saved: str | None = None
        self.signals = StopSignals()
        self.summaries = SummaryWriter(config.summary_dir) if config.summary_dir and world.is_main else None
        # Mixed precision: autocast changes no parameter (they and the checkpoints stay float32), so it
        # combines with any pre-trained checkpoint, which Coqui's graph rewrite could not. fp16 on CUDA
        # needs loss scaling; bf16 on CPU has float32's range and does not.
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        fp16 = config.automatic_mixed_precision and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None

    def load_or_init(self) -> None:
        """Start from the checkpoint Coqui would load, except that a run never starts over on top of its
        own work: once the save directory holds a checkpoint of this run, training resumes from it and
        --drop_source_layers is not applied again (an interrupted transfer restarted with the same
        command would otherwise throw away its trained layers). An interrupted run (one that did not
        reach --epochs) resumes exactly where its newest checkpoint left it."""
        config = self.config
        load_dir, save_dir = config.load_checkpoint_dir, config.save_checkpoint_dir
        if load_dir and load_dir != save_dir and not os.path.isdir(load_dir):
            raise ConfigError(f"Missing checkpoint directory {load_dir!r} (--load_checkpoint_dir)")
        # New checkpoints are numbered after every one already in the save directory, whichever is loaded.
        newest = checkpoint.newest_checkpoint(save_dir) if save_dir and os.path.isdir(save_dir) else None
        newest_state = checkpoint.read_run_state(newest) if newest else {}
        self.save_serial = newest_state.get("save_serial", 0)
        prefix, exact = self.own_checkpoint(newest, newest_state)
        resuming = prefix is not None
        state = checkpoint.read_run_state(prefix) if prefix else {}
        if exact:
            p = Progress.from_json(state["progress"])
            log.info(
                f"Resuming the interrupted run from {prefix}: epoch {p.epoch}, "
                + (f"batch {p.batch} of {p.batches_in_epoch}" if p.stage == "train" else f"stage {p.stage}")
                + f", until --epochs {config.epochs}"
            )
        elif resuming:
            log.info(
                f"Resuming from {prefix}, this run's own checkpoint in the save directory"
                + (
                    f"; --drop_source_layers {config.drop_source_layers} is not applied again"
                    if config.drop_source_layers
                    else "; the source checkpoint is not loaded again"
                )
            )
        else:
            prefix, tried = find_to_load(load_dir, config.load_train)
            state = checkpoint.read_run_state(prefix) if prefix else {}
        if prefix is None:
            if config.load_train != "init" and config.load_train != "auto":
                raise CheckpointError(f"All initialization methods failed ({tried}): no checkpoint in {load_dir}")
            log.info("Initializing all variables.")
            if config.drop_source_layers:
                log.warn(
                    f"--drop_source_layers {config.drop_source_layers} has no effect: no checkpoint to transfer from"
                )
            return
        drop = 0 if resuming else config.drop_source_layers
        if not drop:
            checkpoint.check_alphabet(prefix, self.alphabet)
        columns = self.shared_columns(prefix) if drop and config.keep_shared_symbols else None
        report = checkpoint.load_into(
            prefix,
            self.model,
            self.optimizer,
            config.learning_rate,
            config.force_initialize_learning_rate,
            drop,
            columns,
        )
        self.global_step = report.global_step
        if resuming:
            self.transfer, self.epochs_done = state.get("transfer"), state.get("epochs_done", 0)
            self.best_dev_loss = state.get("best_dev_loss", float("inf"))
        if exact:
            self.progress = Progress.from_json(state["progress"])
            self.resumed_rng = state.get("rng")
            if "learning_rate" in state and not config.force_initialize_learning_rate:
                self.optimizer.lr = state["learning_rate"]  # exactly; the tensor holds it rounded to float32
            if self.scaler and state.get("grad_scaler"):
                self.scaler.load_state_dict(state["grad_scaler"])
        elif drop:
            self.transfer = {
                "source": prefix,
                "drop_source_layers": drop,
                "alphabet": alphabet_record(self.alphabet),
                "keep_shared_symbols": columns is not None,
            }
        if self.transfer:
            self.source_layers = set(checkpoint.LAYER_SCOPES) - checkpoint.dropped_layers(
                self.transfer["drop_source_layers"]
            )
            if config.source_layers_lr_scale != 1.0:
                for scope in self.source_layers:
                    self.optimizer.set_lr_scale(scope, config.source_layers_lr_scale)
        report.log(detailed=True, frozen=self.source_layers if self.frozen_epochs_left() else set())

    def own_checkpoint(self, newest: str | None, newest_state: dict) -> tuple[str | None, bool]:
        """(prefix, exact): a checkpoint this run wrote, if the save directory holds one, and whether to
        resume it exactly. `newest` is the save directory's newest checkpoint, with its run state; if
        its run did not finish, it is resumed exactly (--load_train auto or last). Otherwise, with
        separate load and save directories any checkpoint in the save directory is the run's own, and
        Coqui's choice among them applies (best_dev first for auto); with one directory, only one whose
        run state records this very transfer (same alphabet)."""
        config = self.config
        load_dir, save_dir = config.load_checkpoint_dir, config.save_checkpoint_dir
        if config.load_train == "init" or not save_dir or not os.path.isdir(save_dir):
            return None, False
        one_dir = bool(load_dir) and os.path.realpath(load_dir) == os.path.realpath(save_dir)

        def of_this_run(prefix: str) -> bool:
            if not (one_dir and config.drop_source_layers):
                return True
            transfer = checkpoint.read_run_state(prefix).get("transfer")
            return bool(transfer) and transfer.get("alphabet") == alphabet_record(self.alphabet)

        progress = newest_state.get("progress")
        if config.load_train in ("auto", "last") and progress and not progress.get("finished") and of_this_run(newest):
            return newest, True
        prefix, _ = find_to_load(save_dir, config.load_train, quiet=True)
        if prefix is None or (one_dir and not (config.drop_source_layers and of_this_run(prefix))):
            return None, False
        return prefix, False

    def shared_columns(self, prefix: str) -> list[int | None]:
        path = os.path.join(os.path.dirname(prefix), "alphabet.txt")
        if self.alphabet.is_bytes:
            raise ConfigError("--keep_shared_symbols applies to character alphabets, not --bytes_output_mode")
        if not os.path.isfile(path):
            raise ConfigError(f"--keep_shared_symbols needs the source model's alphabet, and {path} does not exist")
        source = load_alphabet(path)
        columns = checkpoint.shared_output_columns(source.labels, self.alphabet.labels)
        shared = [label for label, column in zip(self.alphabet.labels, columns) if column is not None]
        log.info(
            f"Keeping the output-layer weights of {len(shared)} symbol(s) shared with the source alphabet "
            f"({path}, {source.size} labels) and of the blank: {''.join(shared)!r}"
        )
        return columns

    def frozen_epochs_left(self) -> bool:
        freeze = self.config.freeze_source_layers
        return bool(self.transfer) and (freeze < 0 or self.epochs_done < freeze)

    def set_frozen(self, frozen: bool) -> None:
        """Frozen layers get no gradient, so the optimiser leaves them and their moments alone."""
        for scope, params in self.model.layer_parameters().items():
            for p in params:
                p.requires_grad_(not (frozen and scope in self.source_layers))
        self.wrap()  # DDP fixes its set of parameters when it is built

    def wrap(self) -> None:
        if self.world.distributed:
            self.network = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )

    def save(self, kind: str) -> str | None:
        """Every rank calls it at the same point (it gathers their RNG states); rank 0 writes."""
        self.save_serial += 1
        rng = self.world.gather(rng_state())
        if not self.world.is_main:
            return None
        tensors = checkpoint.to_tensors(self.model, self.optimizer, self.global_step)
        keep = self.config.max_to_keep if kind == "train" else 1
        state = {
            "best_dev_loss": self.best_dev_loss,
            "epochs_done": self.epochs_done,
            "save_serial": self.save_serial,
            "alphabet": alphabet_record(self.alphabet),
            "progress": self.progress.to_json(),
            "learning_rate": self.optimizer.lr,
            "rng": rng[0] if len(rng) == 1 else rng,
        }
        if self.scaler:
            state["grad_scaler"] = self.scaler.state_dict()
        if self.transfer:
            state["transfer"] = self.transfer
        self.last_saved = checkpoint.save(self.config.save_checkpoint_dir, kind, tensors, state, keep)
        return self.last_saved

    def step(self, batch) -> float | None:
        """One optimiser step; returns this rank's mean loss (the caller averages it over ranks together
        with its stop and save votes, in one all-reduce). A non-finite loss on any rank skips the step
        everywhere (weights untouched) and names the files; then every rank returns None."""
        losses = self.losses(batch)
        finite = bool(torch.isfinite(losses).all())
        (anywhere,) = self.world.any(not finite)
        if anywhere:
            bad = [s.audio_path for s, l in zip(batch.samples, losses.tolist()) if not math.isfinite(l)]
            if bad:
                log.warn(f"The following files caused an infinite (or NaN) loss: {','.join(bad)}; step skipped")
            return None
        loss = losses.mean()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)  # skips the step if the scaled gradients overflowed
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.global_step += 1
        return loss.item()

    def losses(self, batch) -> torch.Tensor:
        """Per-sample CTC losses of a training batch; under autocast with --automatic_mixed_precision
        (ctc_loss itself always runs in float32)."""
        with torch.autocast(self.device.type, self.amp_dtype, enabled=self.config.automatic_mixed_precision):
            logits = self.network(batch.features.to(self.device))
        return ctc_loss(logits, batch.feature_lengths, batch.labels, batch.label_lengths)

    def progress_bar(self, loader, epoch: int, title: str, initial: int = 0):
        return tqdm(
            loader,
            desc=f"Epoch {epoch:3d} | {title:>10}",
            disable=not (self.config.show_progressbar and self.world.is_main),
            file=sys.stdout,
            dynamic_ncols=True,
            initial=initial,
        )

    def train_epoch(self, samples) -> None:
        """The rest of the current epoch's training, from the batch the progress records."""
        config, p = self.config, self.progress
        if not config.show_progressbar:
            log.info(f"Training epoch {p.epoch}...")
        loader = data_loader(
            samples, config.train_batch_size, config, train=True, epoch=p.epoch, skip=p.batch, world=self.world
        )
        bar = self.progress_bar(loader, p.epoch, "Training", initial=p.batch)
        self.model.train()
        last_save = time.time()
        for batch in bar:
            rank_loss = self.step(batch)
            p.batch += 1
            # Every rank must stop or save at the same step: rank 0's clock decides when to save.
            due = self.world.is_main and config.checkpoint_secs and time.time() - last_save > config.checkpoint_secs
            loss_sum, stop, save = self.world.sum(rank_loss or 0.0, self.signals.received is not None, bool(due))
            if rank_loss is not None:
                loss = loss_sum / self.world.size
                log.debug(f"Step {self.global_step} - loss: {loss:f}")
                p.loss_sum, p.steps = p.loss_sum + loss, p.steps + 1
                if self.summaries:
                    self.summaries.scalar("train", "step_loss", loss, self.global_step)
                bar.set_postfix_str(f"Steps: {p.steps} | Loss: {p.loss_sum / p.steps:.6f}")
            if stop:
                raise Interrupted(self.signals.received or "a signal to another rank", self.save("train"))
            if save:
                self.save("train")
                last_save = time.time()
        if not config.show_progressbar:
            log.info(f"Finished training epoch {p.epoch} - loss: {p.loss_sum / max(p.steps, 1):f}")

    def dev_loss(self, samples, path: str) -> tuple[float, int]:
        """Mean CTC loss of one dev set and its number of batches."""
        config, epoch = self.config, self.progress.epoch
        if not config.show_progressbar:
            log.info(f"Validating epoch {epoch} on {path}...")
        loader = data_loader(samples, config.dev_batch_size, config, train=False, world=self.world)
        bar = self.progress_bar(loader, epoch, "Validation")
        self.model.eval()
        total, steps = 0.0, 0
        for batch in bar:
            if self.signals.received and not self.world.distributed:
                # the epoch's `train` checkpoint is where a resumed run re-validates
                raise Interrupted(self.signals.received, self.last_saved)
            with torch.no_grad():
                logits = self.model(batch.features.to(self.device))
                loss = float(ctc_loss(logits, batch.feature_lengths, batch.labels, batch.label_lengths).mean())
            total, steps = total + loss, steps + 1
            if self.summaries:
                self.summaries.scalar("dev", "step_loss", loss, self.global_step)
            bar.set_postfix_str(f"Steps: {steps} | Loss: {total / steps:.6f} | Dataset: {path}")
        total, steps = self.world.sum(total, steps)  # each rank validated a share of the batches
        steps = int(steps)
        mean = total / max(steps, 1)
        if not config.show_progressbar:
            log.info(f"Finished validating epoch {epoch} on {path} - loss: {mean:f}")
        return mean, steps

    def check_largest_batch(self, samples) -> None:
        """Coqui's dummy run, reduced to what it is for: fail now, not hours in, if the largest batch does not fit."""
        log.info("Performing dummy training to check for memory problems.")
        log.info(
            "If the following process crashes, you likely have batch sizes that are too big for your available "
            "system memory (or GPU memory)."
        )
        loader = data_loader(samples[-self.config.train_batch_size :], self.config.train_batch_size, self.config, True)
        self.model.train()
        with self.network.no_sync() if self.world.distributed else contextlib.nullcontext():  # local, no all-reduce
            for batch in loader:
                self.losses(batch).mean().backward()
        self.optimizer.zero_grad(set_to_none=True)
        log.info("Dummy run finished without problems, now starting real training process.")

    def train(self, train_set, dev_sets, metrics_sets) -> None:
        """Epochs until --epochs (or an early stop). Raises Interrupted after a stop signal."""
        config, p = self.config, self.progress
        if not config.skip_batch_test:
            self.check_largest_batch(train_set)
        if self.resumed_rng:  # after the dummy run, whose dropout draws are not the run's
            states = self.resumed_rng if isinstance(self.resumed_rng, list) else [self.resumed_rng]
            if len(states) == self.world.size:
                set_rng_state(states[self.world.rank])
            else:
                log.warn(
                    f"The interrupted run had {len(states)} process(es), this one {self.world.size}: dropout "
                    "draws differ from the interrupted run's"
                )
        batches = len(make_batches(len(train_set), config.train_batch_size * self.world.size, drop_last=True))
        if p.stage == "train" and p.batch and p.batches_in_epoch != batches:
            log.warn(
                f"The training set or batch size changed since the interruption ({p.batches_in_epoch} batches "
                f"per epoch then, {batches} now): epoch {p.epoch} starts again from its first batch"
            )
            p.batch, p.loss_sum, p.steps = 0, 0.0, 0
        p.batches_in_epoch = batches
        log.info("STARTING Optimization")
        started = time.time()
        with self.signals:
            while p.epoch < config.epochs and not self.run_one_epoch(train_set, dev_sets, metrics_sets):
                if self.world.any(self.signals.received is not None)[0]:
                    raise Interrupted(self.signals.received or "a signal to another rank", self.last_saved)
                p.next_epoch()
        p.finished = True
        if self.last_saved:
            checkpoint.update_run_state(self.last_saved, progress=p.to_json())
        log.info(f"FINISHED optimization in {timedelta(seconds=time.time() - started)}")

    def run_one_epoch(self, train_set, dev_sets, metrics_sets) -> bool:
        """Whatever of the current epoch is left; True if early stopping ends the run."""
        p = self.progress
        if p.stage == "train":
            frozen = self.frozen_epochs_left()
            if self.source_layers and frozen != any(not q.requires_grad for q in self.model.trainable_parameters()):
                log.info(
                    ("Freezing" if frozen else "Unfreezing")
                    + " the layers loaded from the source checkpoint: "
                    + ", ".join(sorted(self.source_layers))
                )
                self.set_frozen(frozen)
            self.train_epoch(train_set)
            self.epochs_done += 1
            p.stage = "trained"
            self.save("train")
        if p.stage == "trained":
            p.stage = "validated"
            if dev_sets and self.validate(dev_sets):
                return True
        for path, samples in metrics_sets:
            self.report_metrics(p.epoch, path, samples)
        if self.world.is_main:
            print("-" * 80, flush=True)
        return False

    def validate(self, dev_sets) -> bool:
        """Dev losses, best_dev checkpoint, plateau; True if early stopping is triggered."""
        config, p = self.config, self.progress
        losses = [self.dev_loss(samples, path) for path, samples in dev_sets]
        steps = sum(n for _, n in losses)
        dev_loss = sum(loss * n for loss, n in losses) / max(steps, 1)
        if dev_loss > self.best_dev_loss - config.es_min_delta:
            p.epochs_without_improvement += 1
        else:
            p.epochs_without_improvement = 0
        if dev_loss < self.best_dev_loss:
            self.best_dev_loss = dev_loss
            path = self.save("best_dev")
            log.info(f"Saved new best validating model with loss {dev_loss:f} to: {path}")
        if config.early_stop and p.epochs_without_improvement == config.es_epochs:
            log.info(f"Early stop triggered as the loss did not improve the last {config.es_epochs} epochs")
            return True
        if (
            config.reduce_lr_on_plateau
            and p.epochs_without_improvement > 0
            and p.epochs_without_improvement % config.plateau_epochs == 0
        ):
            self.reduce_learning_rate()
        return False

    def report_metrics(self, epoch: int, path: str, samples) -> None:
        """Coqui reports only the loss of a --metrics_files set; greedy WER and CER are added so that a set
        from the source domain shows what fine-tuning forgets. They never affect best-dev selection."""
        results = evaluate_samples(
            self.model, samples, self.config, self.greedy, self.device, self.config.dev_batch_size, self.world
        )
        wer, cer, loss = totals(results)
        log.info(f"Finished metrics for epoch {epoch} on {path} - loss: {loss:f} - greedy WER: {wer:f}, CER: {cer:f}")
        if self.summaries:
            for name, value in (("loss", loss), ("wer", wer), ("cer", cer)):
                self.summaries.scalar("metrics", f"{name}/{os.path.basename(path)}", value, self.global_step)

    def greedy(self, logits, lengths) -> list[str]:
        return greedy_decode(logits, lengths, self.alphabet)

    def reduce_learning_rate(self) -> None:
        """Coqui's plateau rule: back to the best weights, learning rate times --plateau_reduction."""
        self.world.barrier()  # rank 0 has finished writing the checkpoint every rank now reads
        prefix = checkpoint.find_checkpoint(self.config.save_checkpoint_dir, "best_dev")
        lr = self.optimizer.lr * self.config.plateau_reduction
        if prefix:
            report = checkpoint.load_into(prefix, self.model, self.optimizer, lr)
            self.global_step = report.global_step
        self.optimizer.lr = lr
        log.info(f"Encountered a plateau, reducing learning rate to {lr}")
        path = self.save("best_dev")
        log.info(f"Saved best validating model with reduced learning rate to: {path}")


def train_job(config: Config) -> None:
    world = init_world()
    if not world.is_main:
        log.set_level(max(config.log_level, log.WARN))  # rank 0 speaks for the run; others only warn
    try:
        train_and_test(config, world)
    finally:
        close_world(world)


def train_and_test(config: Config, world: World) -> None:
    if not config.train_files:
        log.warn("Calling training module without --train_files.")
    elif not config.save_checkpoint_dir:
        raise ConfigError("Missing checkpoint directory (--checkpoint_dir or --save_checkpoint_dir)")
    alphabet = resolve_alphabet(config)
    # Every data set is checked before the first step: a bad row found in epoch 40 wastes a day.
    train_set = load_data_set(config.train_files, alphabet, config, "train") if config.train_files else []
    dev_sets = [(p, load_data_set([p], alphabet, config, "dev")) for p in config.dev_files or []]
    metrics_sets = [(p, load_data_set([p], alphabet, config, "metrics")) for p in config.metrics_files or []]
    test_sets = [(p, load_data_set([p], alphabet, config, "test")) for p in config.test_files or []]
    global_batch = config.train_batch_size * world.size
    if config.train_files and len(train_set) < global_batch:
        raise DataError(
            f"--train_files has {len(train_set)} samples, fewer than one batch of "
            f"--train_batch_size {config.train_batch_size}"
            + (f" times {world.size} processes" if world.distributed else "")
        )
    # Coqui's train also exports with --export_dir: its target is checked now, not after the training.
    export_targets = export_paths(config) if config.export_dir and world.is_main else None
    if world.distributed:
        log.info(
            f"Distributed training: {world.size} processes, global batch {global_batch} "
            f"(--train_batch_size {config.train_batch_size} each)"
        )
    if config.train_files:
        save_dir = config.save_checkpoint_dir
        trainer = Trainer(config, alphabet, world)
        trainer.load_or_init()
        if world.is_main:
            checkpoint.check_writable(save_dir)
            checkpoint.write_text_once(os.path.join(save_dir, "flags.txt"), config.to_json())
            if not alphabet.is_bytes:
                checkpoint.write_text_once(os.path.join(save_dir, "alphabet.txt"), alphabet.serialize_text())
        try:
            trainer.train(train_set, dev_sets, metrics_sets)
        except Interrupted as stop:
            name, prefix = stop.args
            log.info(
                f"Stopped on {name} at epoch {trainer.progress.epoch}"
                + (f", batch {trainer.progress.batch}" if trainer.progress.stage == "train" else "")
                + (f"; checkpoint saved to {prefix}" if prefix else "; nothing was trained yet")
                + ". Run the same command again to resume."
            )
            return
    if config.test_files or config.export_dir or config.one_shot_infer:
        # Test, export and transcribe what this run produced (its save directory), never the checkpoint it
        # started from; the model is loaded once for all three.
        world.barrier()  # after rank 0's last write
        model, alphabet, device = setup_evaluation(
            config, config.save_checkpoint_dir or config.load_checkpoint_dir, world
        )
        if config.test_files:
            test(model, config, alphabet, device, test_sets, world)
        if export_targets:
            export(config, model, alphabet, export_targets)
        if config.one_shot_infer and world.is_main:
            one_shot_infer(config, model, alphabet, device)


def main(argv: list[str] | None = None) -> None:
    run_cli(train_job, argv, "python -m coqui_stt_training.train")


if __name__ == "__main__":
    main()
