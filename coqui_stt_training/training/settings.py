"""What the training loop takes from the flags: small frozen objects, one per concern, so that the loop
never reads the whole Config (flags/options.py builds them from it; a test or a script can build them
directly)."""

from __future__ import annotations

from dataclasses import dataclass

from ..feeding.batches import LoaderSettings


@dataclass(frozen=True)
class ModelSettings:
    """A freshly initialised model: its shape, dropout and seed."""

    n_hidden: int
    layer_norm: bool
    relu_clip: float
    dropout: tuple[float, float, float, float]  # of layers 1, 2, 3 and 6 (--dropout_rate, 2, 3, 6)
    random_seed: int


@dataclass(frozen=True)
class AdamSettings:
    learning_rate: float
    beta1: float
    beta2: float
    epsilon: float
    force_initialize_learning_rate: bool = False  # --learning_rate rather than a loaded checkpoint's rate


@dataclass(frozen=True)
class TransferSettings:
    """How a transfer treats the layers it loaded from its source (the defaults: Coqui's, train them all)."""

    keep_shared_symbols: bool = False
    freeze_source_layers: int = 0  # epochs; -1: the whole run
    source_layers_lr_scale: float = 1.0


@dataclass(frozen=True)
class ScheduleSettings:
    """How long the run trains, and when it stops early or lowers the learning rate."""

    epochs: int
    early_stop: bool = False
    es_epochs: int = 25
    es_min_delta: float = 0.05
    reduce_lr_on_plateau: bool = False
    plateau_epochs: int = 10
    plateau_reduction: float = 0.1


@dataclass(frozen=True)
class SavingSettings:
    """Where the run's checkpoints go, how often, and how many `train` ones are kept."""

    directory: str
    checkpoint_secs: int = 600
    max_to_keep: int = 5


@dataclass(frozen=True)
class TrainingSettings:
    model: ModelSettings
    adam: AdamSettings
    transfer: TransferSettings
    schedule: ScheduleSettings
    saving: SavingSettings
    loader: LoaderSettings
    train_batch_size: int
    dev_batch_size: int
    skip_batch_test: bool = False  # no dummy run on the largest batch first
    mixed_precision: bool = False  # --automatic_mixed_precision
    summary_dir: str = ""  # TensorBoard's; empty: none
    show_progressbar: bool = True
