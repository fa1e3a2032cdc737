"""The training loop, as Coqui STT 1.4 trains (docs/compatibility.md, "Training").

Epochs until --epochs (or an early stop). Each epoch trains (a `train` checkpoint every
--checkpoint_secs and at its end), validates on the dev sets (a `best_dev` checkpoint when the loss
improves; early stopping and reduce-on-plateau from the dev loss), then reports the metrics sets.
Where the run starts is training/start.py's decision, which Trainer.begin applies; a stop signal ends
the loop at the next safe point with a checkpoint (system/signals.py). Every process of a distributed run
steps through the same loop; decisions that must agree are reduced over all of them (system/distributed.py).
What the loop reads from the flags comes in small settings objects (training/settings.py).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from datetime import timedelta

import torch
from tqdm.auto import tqdm  # a notebook's own progress bar under Jupyter, text elsewhere

from ..checkpoints import store
from ..checkpoints.layout import to_tensors
from ..checkpoints.load import check_alphabet, load_into, shared_output_columns, source_alphabet
from ..checkpoints.run_state import Progress, RunState, TransferRecord, rng_state, set_rng_state
from ..data.samples import Sample
from ..decoding.beam_search import greedy_decode
from ..decoding.evaluation import evaluate_samples, totals
from ..feeding.augment_batch import augment_features
from ..feeding.batches import Batch, data_loader, make_batches, warn_if_cache_unused
from ..feeding.feature_cache import FeaturesInMemory
from ..feeding.rehearsal import TrainingSet
from ..formats.tfevents import SummaryWriter
from ..model.alphabet import AnyAlphabet, alphabet_record
from ..model.deepspeech import DeepSpeech, ModelDimensions
from ..model.loss import ctc_loss
from ..model.optimizer import TFAdam
from ..system import log
from ..system.distributed import World
from ..system.errors import ConfigError, UserError
from ..system.signals import Interrupted, StopSignals, child_signals_held
from .settings import AdamSettings, ModelSettings, TrainingSettings
from .start import Start, frozen, source_layers

DataSets = list[tuple[str, list[Sample]]]  # (path, checked samples) per dev or metrics set


class DataWorkerLost(UserError):
    """A data worker process died mid-epoch; the run saved where it was and stopped."""


def build_model(
    settings: ModelSettings, adam: AdamSettings, alphabet: AnyAlphabet, device: torch.device
) -> tuple[DeepSpeech, TFAdam]:
    """A freshly initialised model of the settings' shape, and its optimiser: one parameter group per layer,
    so that transfer learning can train the kept layers at another rate."""
    torch.manual_seed(settings.random_seed)
    dims = ModelDimensions(settings.n_hidden, alphabet.size + 1, settings.layer_norm)
    model = DeepSpeech(dims, settings.relu_clip, settings.dropout)
    model.reset_parameters(torch.Generator().manual_seed(settings.random_seed))
    model.to(device)
    groups = [{"name": name, "params": params} for name, params in model.layer_parameters().items()]
    optimizer = TFAdam(groups, adam.learning_rate, adam.beta1, adam.beta2, adam.epsilon)
    return model, optimizer


def cpu_has_bfloat16_units() -> bool:
    """Whether the CPU multiplies bfloat16 matrices in hardware (AVX512_BF16 or AMX). Without them torch
    converts every element in software: a bfloat16 matrix product ran 25 to 600x slower than float32 on
    an AVX2 CPU, so mixed precision there is only a slowdown."""
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


class Trainer:
    """One training run: the model, its optimiser, and the run state its checkpoints record."""

    def __init__(self, settings: TrainingSettings, alphabet: AnyAlphabet, world: World = World()):
        self.settings, self.alphabet, self.world, self.device = settings, alphabet, world, world.device()
        self.loader = settings.loader
        warn_if_cache_unused(self.loader)
        self.memory = FeaturesInMemory.for_this_process()  # features for the epochs after the first
        self.model, self.optimizer = build_model(settings.model, settings.adam, alphabet, self.device)
        if world.rank:
            torch.manual_seed(settings.model.random_seed + world.rank)  # same initial weights, other dropout masks
        self.network: torch.nn.Module = self.model  # what training steps call: the model, or DDP around it
        self.wrap()
        self.run = RunState(progress=Progress())
        self.resumed_rng: list[dict] = []  # generators to restore before the first resumed step
        self.source_layers: set[str] = set()
        self.last_saved: str | None = None
        self.signals = StopSignals()
        self.summaries = SummaryWriter(settings.summary_dir) if settings.summary_dir and world.is_main else None
        # Mixed precision: autocast changes no parameter (they and the checkpoints stay float32), so it
        # combines with any pre-trained checkpoint, which Coqui's graph rewrite could not. fp16 on CUDA
        # needs loss scaling; bf16 on CPU has float32's range and does not.
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.mixed_precision = settings.mixed_precision
        if self.mixed_precision and self.device.type == "cpu" and not cpu_has_bfloat16_units():
            log.warn(
                "--automatic_mixed_precision: this CPU has no bfloat16 matrix units (AVX512_BF16 or AMX), and "
                "bfloat16 there is 50x slower than float32 or worse (docs/benchmarks.md): training in float32"
            )
            self.mixed_precision = False
        fp16 = self.mixed_precision and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None

    @property
    def progress(self) -> Progress:
        assert self.run.progress is not None
        return self.run.progress

    def close(self) -> None:
        if self.summaries:
            self.summaries.close()

    # ---- the start ---------------------------------------------------------------------------------

    def begin(self, start: Start, save_serial: int) -> None:
        """Apply training/start.py's decision: load the checkpoint (dropping what a new transfer drops), and take
        over the run state of the run's own checkpoint."""
        adam, transfer, run = self.settings.adam, self.settings.transfer, self.run
        run.save_serial = save_serial
        if start.prefix is None:
            return
        if not start.drop:
            check_alphabet(start.prefix, self.alphabet)
        columns = self.shared_columns(start.prefix) if start.drop and transfer.keep_shared_symbols else None
        report = load_into(
            start.prefix,
            self.model,
            self.optimizer,
            adam.learning_rate,
            adam.force_initialize_learning_rate,
            start.drop,
            columns,
        )
        run.global_step = report.global_step
        from_state = start.state or RunState()
        if start.resuming:  # the run's own history goes on
            run.transfer = from_state.transfer
            run.epochs_done = from_state.epochs_done
            run.best_dev_loss = from_state.best_dev_loss
        if start.exact:
            run.progress = from_state.progress or Progress()
            self.resumed_rng = from_state.rng
            if from_state.learning_rate is not None and not adam.force_initialize_learning_rate:
                self.optimizer.lr = from_state.learning_rate  # exactly; the tensor holds it rounded to float32
            if self.scaler and from_state.grad_scaler:
                self.scaler.load_state_dict(from_state.grad_scaler)
        elif start.drop:
            run.transfer = TransferRecord(start.prefix, start.drop, alphabet_record(self.alphabet), columns is not None)
        self.source_layers = source_layers(run.transfer)
        if run.transfer and transfer.source_layers_lr_scale != 1.0:
            for scope in self.source_layers:
                self.optimizer.set_lr_scale(scope, transfer.source_layers_lr_scale)
        report.log(detailed=True, frozen=self.source_layers if self.frozen_now() else set())

    def shared_columns(self, prefix: str) -> list[int | None]:
        """--keep_shared_symbols: the source output layer's column for each symbol both alphabets share."""
        if self.alphabet.is_bytes:
            raise ConfigError("--keep_shared_symbols applies to character alphabets, not --bytes_output_mode")
        found = source_alphabet(prefix)
        if found is None or isinstance(found[0], str):
            raise ConfigError(
                f"--keep_shared_symbols needs the source model's character alphabet, and nothing beside {prefix} "
                "says it (no alphabet.txt)"
            )
        source, where = found
        assert not isinstance(source, str)  # a character alphabet: checked above
        columns = shared_output_columns(source, self.alphabet.labels)
        shared = [label for label, column in zip(self.alphabet.labels, columns) if column is not None]
        log.info(
            f"Keeping the output-layer weights of {len(shared)} symbol(s) shared with the source alphabet "
            f"({where}, {len(source)} labels) and of the blank: {''.join(shared)!r}"
        )
        return columns

    def frozen_now(self) -> bool:
        return frozen(self.run.transfer, self.run.epochs_done, self.settings.transfer.freeze_source_layers)

    # ---- the loop ----------------------------------------------------------------------------------

    def train(self, train_set: TrainingSet, dev_sets: DataSets, metrics_sets: DataSets) -> None:
        """Epochs until --epochs (or an early stop). Raises Interrupted after a stop signal."""
        settings, p = self.settings, self.progress
        if not settings.skip_batch_test:
            self.check_largest_batch(train_set.longest(settings.train_batch_size))
        self.restore_generators()  # after the dummy run, whose dropout draws are not the run's
        batches = len(make_batches(len(train_set), settings.train_batch_size * self.world.size, drop_last=True))
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
            while p.epoch < settings.schedule.epochs:
                if p.stage == "train":
                    self.freeze_or_unfreeze()
                    self.train_epoch(train_set)
                    self.run.epochs_done += 1
                    p.stage = "trained"
                    self.save("train")
                if p.stage == "trained":
                    p.stage = "validated"
                    if dev_sets and self.validate(dev_sets):
                        break  # early stop
                for path, samples in metrics_sets:
                    self.report_metrics(p.epoch, path, samples)
                if self.world.is_main:
                    print("-" * 80, flush=True)
                if self.world.any(self.signals.received is not None)[0]:
                    raise Interrupted(self.signals.received or "a signal to another rank", self.last_saved)
                p.next_epoch()
        p.finished = True
        if self.last_saved:
            state = store.read_run_state(self.last_saved) or RunState()
            state.progress = p
            store.update_run_state(self.last_saved, state)
        log.info(f"FINISHED optimization in {timedelta(seconds=time.time() - started)}")

    def train_epoch(self, train_set: TrainingSet) -> None:
        """The rest of the current epoch's training, from the batch the progress records."""
        settings, p = self.settings, self.progress
        if not settings.show_progressbar:
            log.info(f"Training epoch {p.epoch}...")
        samples, rehearsed = train_set.epoch(self.loader.random_seed, p.epoch)
        plain = frozenset() if self.loader.rehearsal_augment else rehearsed
        size, memory = settings.train_batch_size, self.memory
        loader = data_loader(samples, size, self.loader, True, p.epoch, p.batch, self.world, plain, memory)
        bar = self.progress_bar(loader, p.epoch, "Training", initial=p.batch)
        self.model.train()
        try:
            self.train_batches(bar)
        except RuntimeError as e:  # torch's words for a worker process that died (the OOM killer's SIGKILL)
            if not str(e).startswith("DataLoader worker") or self.world.distributed:
                raise
            saved = self.save("train")  # after the last whole step: the resumed run goes on exactly from here
            said = str(e).splitlines()[0].rstrip(". ")
            raise DataWorkerLost(
                f"a data worker process died ({said}; out of memory?): training stopped at epoch {p.epoch}, batch "
                f"{p.batch}, checkpoint saved to {saved}. Run the same command again to resume"
            ) from None
        if not settings.show_progressbar:
            log.info(f"Finished training epoch {p.epoch} - loss: {p.loss_sum / max(p.steps, 1):f}")

    def train_batches(self, bar: tqdm) -> None:
        """The epoch's remaining steps; a `train` checkpoint every --checkpoint_secs; stop at a stop signal."""
        settings, p = self.settings, self.progress
        last_save = time.time()
        for batch in bar:
            with child_signals_held():  # a dead data worker is noticed between steps, never inside one
                rank_loss = self.step(batch)
                p.batch += 1
            # Every rank must stop or save at the same step: rank 0's clock decides when to save.
            every = settings.saving.checkpoint_secs
            due = self.world.is_main and every and time.time() - last_save > every
            loss_sum, stop, save = self.world.sum(rank_loss or 0.0, self.signals.received is not None, bool(due))
            if rank_loss is not None:
                loss = loss_sum / self.world.size
                log.debug(f"Step {self.run.global_step} - loss: {loss:f}")
                p.loss_sum, p.steps = p.loss_sum + loss, p.steps + 1
                if self.summaries:
                    self.summaries.scalar("train", "step_loss", loss, self.run.global_step)
                bar.set_postfix_str(f"Steps: {p.steps} | Loss: {p.loss_sum / p.steps:.6f}")
            if stop:
                raise Interrupted(self.signals.received or "a signal to another rank", self.save("train"))
            if save:
                self.save("train")
                last_save = time.time()

    def step(self, batch: Batch) -> float | None:
        """One optimiser step; returns this rank's mean loss (the caller averages it over ranks together
        with its stop and save votes, in one all-reduce). A non-finite loss on any rank skips the step
        everywhere (weights untouched) and names the files; then every rank returns None."""
        losses = self.losses(batch)
        finite = bool(torch.isfinite(losses).all())
        (anywhere,) = self.world.any(not finite)
        if anywhere:
            self.stop_if_weights_not_finite()
            bad = [s.audio_path for s, value in zip(batch.samples, losses.tolist()) if not math.isfinite(value)]
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
        self.run.global_step += 1
        return loss.item()

    def stop_if_weights_not_finite(self) -> None:
        """A non-finite loss from non-finite weights would skip every step from here on: stop, keeping the
        last good checkpoint (saving checks the same, so none is ever replaced by such weights)."""
        (broken,) = self.world.any(not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()))
        if broken:
            last = self.last_saved or store.newest_checkpoint(self.settings.saving.directory)
            raise store.NonFiniteWeightsError(
                f"the weights became NaN or infinite at step {self.run.global_step}: stopping; "
                + (f"the last good checkpoint, {last}, is kept" if last else "nothing was saved")
                + ". Try a lower --learning_rate"
            )

    def losses(self, batch: Batch) -> torch.Tensor:
        """Per-sample CTC losses of a training batch; under autocast with --automatic_mixed_precision
        (ctc_loss itself always runs in float32)."""
        features, lengths = batch.features.to(self.device), batch.feature_lengths
        if batch.utterances is not None and batch.seeds is not None:  # --augment: the graph domains
            augmentations = list(self.loader.augmentations)
            features, lengths = augment_features(
                batch.utterances, batch.seeds, batch.clock, augmentations, self.loader.features, self.device
            )
        with torch.autocast(self.device.type, self.amp_dtype, enabled=self.mixed_precision):
            logits = self.network(features)
        return ctc_loss(logits, lengths, batch.labels, batch.label_lengths)

    def validate(self, dev_sets: DataSets) -> bool:
        """Dev losses, best_dev checkpoint, plateau; True if early stopping is triggered."""
        schedule, run, p = self.settings.schedule, self.run, self.progress
        losses = [self.dev_loss(samples, path) for path, samples in dev_sets]
        steps = sum(n for _, n in losses)
        dev_loss = sum(loss * n for loss, n in losses) / max(steps, 1)
        self.record_dev_loss(dev_loss)
        if dev_loss > run.best_dev_loss - schedule.es_min_delta:
            p.epochs_without_improvement += 1
        else:
            p.epochs_without_improvement = 0
        if dev_loss < run.best_dev_loss:
            run.best_dev_loss = dev_loss
            path = self.save("best_dev")
            log.info(f"Saved new best validating model with loss {dev_loss:f} to: {path}")
        if schedule.early_stop and p.epochs_without_improvement == schedule.es_epochs:
            log.info(f"Early stop triggered as the loss did not improve the last {schedule.es_epochs} epochs")
            return True
        if (
            schedule.reduce_lr_on_plateau
            and p.epochs_without_improvement > 0
            and p.epochs_without_improvement % schedule.plateau_epochs == 0
        ):
            self.reduce_learning_rate()
        return False

    def record_dev_loss(self, dev_loss: float) -> None:
        """The epoch's `train` checkpoint (these very weights) keeps its dev loss: what averaging the N best
        checkpoints ranks them by (python -m coqui_stt_training.combine --average_best)."""
        prefix = store.find_checkpoint(self.settings.saving.directory, "train") if self.world.is_main else None
        state = store.read_run_state(prefix) if prefix else None
        if prefix and state and state.global_step == self.run.global_step:
            state.dev_loss = dev_loss
            store.update_run_state(prefix, state)

    def dev_loss(self, samples: list[Sample], path: str) -> tuple[float, int]:
        """Mean CTC loss of one dev set and its number of batches."""
        settings, epoch = self.settings, self.progress.epoch
        if not settings.show_progressbar:
            log.info(f"Validating epoch {epoch} on {path}...")
        loader = data_loader(samples, settings.dev_batch_size, self.loader, False, world=self.world, memory=self.memory)
        bar = self.progress_bar(loader, epoch, "Validation")
        self.model.eval()
        total, steps, losses = 0.0, 0, []
        for batch in bar:
            if self.signals.received and not self.world.distributed:
                # the epoch's `train` checkpoint is where a resumed run re-validates
                raise Interrupted(self.signals.received, self.last_saved)
            with torch.no_grad():
                logits = self.model.infer(batch.features.to(self.device))
                loss = float(ctc_loss(logits, batch.feature_lengths, batch.labels, batch.label_lengths).mean())
            total, steps = total + loss, steps + 1
            losses.append(loss)
            bar.set_postfix_str(f"Steps: {steps} | Loss: {total / steps:.6f} | Dataset: {path}")
        # Each rank validated a share of the batches; the signal vote rides on the same all-reduce, as ranks
        # that hold different numbers of batches cannot vote per batch.
        signalled = self.signals.received is not None
        total, summed_steps, stops = self.world.sum(total, steps, float(signalled))
        if stops and self.world.distributed:
            raise Interrupted(self.signals.received or "a signal to another rank", self.last_saved)
        shares = self.world.gather(losses) if self.world.distributed else [losses]
        if self.summaries:  # rank 0 writes every rank's batches, in the order one process takes them
            for loss in (share[i] for i in range(max(map(len, shares))) for share in shares if i < len(share)):
                self.summaries.scalar("dev", "step_loss", loss, self.run.global_step)
        steps = int(summed_steps)
        mean = total / max(steps, 1)
        if not settings.show_progressbar:
            log.info(f"Finished validating epoch {epoch} on {path} - loss: {mean:f}")
        return mean, steps

    def report_metrics(self, epoch: int, path: str, samples: list[Sample]) -> None:
        """Coqui reports only the loss of a --metrics_files set; greedy WER and CER are added so that a set
        from the source domain shows what fine-tuning forgets. They never affect best-dev selection."""
        decoder = lambda logits, lengths: greedy_decode(logits, lengths, self.alphabet)
        results = evaluate_samples(
            self.model, samples, decoder, self.device, self.settings.dev_batch_size, self.loader, self.world
        )
        wer, cer, loss = totals(results)
        log.info(f"Finished metrics for epoch {epoch} on {path} - loss: {loss:f} - greedy WER: {wer:f}, CER: {cer:f}")
        if self.summaries:
            for name, value in (("loss", loss), ("wer", wer), ("cer", cer)):
                self.summaries.scalar("metrics", f"{name}/{os.path.basename(path)}", value, self.run.global_step)

    def reduce_learning_rate(self) -> None:
        """Coqui's plateau rule: back to the best weights, learning rate times --plateau_reduction."""
        self.world.barrier()  # rank 0 has finished writing the checkpoint every rank now reads
        prefix = store.find_checkpoint(self.settings.saving.directory, "best_dev")
        lr = self.optimizer.lr * self.settings.schedule.plateau_reduction
        if prefix:
            report = load_into(prefix, self.model, self.optimizer, lr)
            self.run.global_step = report.global_step
        self.optimizer.lr = lr
        log.info(f"Encountered a plateau, reducing learning rate to {lr}")
        path = self.save("best_dev")
        log.info(f"Saved best validating model with reduced learning rate to: {path}")

    # ---- the loop's parts ----------------------------------------------------------------------------

    def check_largest_batch(self, samples: list[Sample]) -> None:
        """Coqui's dummy run, reduced to what it is for: fail now, not hours in, if the largest batch (`samples`)
        does not fit."""
        log.info("Performing dummy training to check for memory problems.")
        log.info(
            "If the following process crashes, you likely have batch sizes that are too big for your available "
            "system memory (or GPU memory)."
        )
        loader = data_loader(samples, self.settings.train_batch_size, self.loader, True, memory=self.memory)
        self.model.train()
        no_sync = self.network.no_sync() if self.world.distributed else contextlib.nullcontext()  # type: ignore[operator]
        with no_sync:  # local, no all-reduce
            for batch in loader:
                self.losses(batch).mean().backward()
        self.optimizer.zero_grad(set_to_none=True)
        log.info("Dummy run finished without problems, now starting real training process.")

    def restore_generators(self) -> None:
        """The random generators of the interrupted run this one resumes, one per process."""
        if not self.resumed_rng:
            return
        if len(self.resumed_rng) == self.world.size:
            set_rng_state(self.resumed_rng[self.world.rank])
        else:
            log.warn(
                f"The interrupted run had {len(self.resumed_rng)} process(es), this one {self.world.size}: "
                "dropout draws differ from the interrupted run's"
            )

    def freeze_or_unfreeze(self) -> None:
        """--freeze_source_layers: the transfer's source layers get no gradient while they are frozen."""
        want = self.frozen_now()
        if not self.source_layers or want == any(not q.requires_grad for q in self.model.trainable_parameters()):
            return
        log.info(
            ("Freezing" if want else "Unfreezing")
            + " the layers loaded from the source checkpoint: "
            + ", ".join(sorted(self.source_layers))
        )
        for scope, params in self.model.layer_parameters().items():
            for param in params:
                param.requires_grad_(not (want and scope in self.source_layers))
        self.wrap()  # DDP fixes its set of parameters when it is built

    def wrap(self) -> None:
        if self.world.distributed:
            self.network = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )

    def save(self, kind: str) -> str | None:
        """Every rank calls it at the same point (it gathers their RNG states); rank 0 writes."""
        run = self.run
        run.save_serial += 1
        run.rng = self.world.gather(rng_state())
        if not self.world.is_main:
            return None
        run.alphabet = alphabet_record(self.alphabet)
        run.learning_rate = self.optimizer.lr
        run.grad_scaler = self.scaler.state_dict() if self.scaler else None
        tensors = to_tensors(self.model, self.optimizer, run.global_step)
        saving = self.settings.saving
        keep = saving.max_to_keep if kind == "train" else 1
        self.last_saved = store.save(saving.directory, kind, tensors, run, keep)
        return self.last_saved

    def progress_bar(self, loader, epoch: int, title: str, initial: int = 0) -> tqdm:
        return tqdm(
            loader,
            desc=f"Epoch {epoch:3d} | {title:>10}",
            disable=not (self.settings.show_progressbar and self.world.is_main),
            file=sys.stdout,
            dynamic_ncols=True,
            initial=initial,
        )
