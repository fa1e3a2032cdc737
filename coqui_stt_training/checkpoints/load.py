"""Loading a checkpoint into a model: load_model for evaluation and export (the model's shape taken from
the checkpoint's own tensors), load_into for training, with the transfer-learning rules.

Every name, shape and dtype is checked before any parameter changes, and an output layer trained for
another alphabet is refused, so a failed load leaves the model as it was and says why in one line.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch

from ..model.alphabet import AnyAlphabet, alphabet_record, load_alphabet
from ..model.deepspeech import DeepSpeech, ModelDimensions
from ..model.optimizer import TFAdam
from ..system import log
from ..system.errors import ConfigError
from .from_export import EXPORT_SUFFIXES, exported_model_file, open_exported
from .layout import TensorReader, Variable, dimensions, dropped_substrings, variables
from .run_state import AlphabetRecord
from .store import CheckpointError, open_checkpoint, read_run_state, search, verify


@dataclass
class LoadedModel:
    """A model ready to evaluate, export or transcribe with: weights from `prefix`, in eval mode on `device`."""

    model: DeepSpeech
    alphabet: AnyAlphabet
    prefix: str
    device: torch.device


def load_model(
    directory: str,
    alphabet: AnyAlphabet,
    which: str = "auto",
    device: torch.device | None = None,
    relu_clip: float = 20.0,
) -> LoadedModel:
    """The model in a checkpoint directory, found in Coqui's --load_evaluate order (auto: best_dev, then the
    last train checkpoint), shaped as its tensors say (n_hidden, layer normalisation) with one output
    class per label of `alphabet` plus the blank. Adam moments are not read."""
    require_directory(directory)
    found = search(directory, which, exported=True)
    found.log()
    if found.prefix is None:
        raise CheckpointError(f"All initialization methods failed ({found.tried}): no checkpoint in {directory}")
    verify(found.prefix)  # a damaged checkpoint is refused by name, not evaluated
    reader = open_checkpoint(found.prefix)
    dims = dimensions(reader)
    if dims is None:
        raise CheckpointError(f"{found.prefix}: no layer_1/bias or layer_6/bias; it is not a DeepSpeech checkpoint")
    check_alphabet(found.prefix, alphabet)
    model = DeepSpeech(ModelDimensions(dims.n_hidden, alphabet.size + 1, dims.layer_norm), relu_clip)
    load_into(found.prefix, model, reader=reader).log()
    device = device or torch.device("cpu")
    return LoadedModel(model.to(device).eval(), alphabet, found.prefix, device)


def require_directory(directory: str) -> None:
    if not directory:
        raise ConfigError("Missing checkpoint directory (--checkpoint_dir or --load_checkpoint_dir)")
    if not os.path.isdir(directory) and not exported_model_file(directory):
        raise ConfigError(f"Missing checkpoint directory {directory!r} (--checkpoint_dir or --load_checkpoint_dir)")


def source_alphabet(prefix: str) -> tuple[AlphabetRecord, str] | None:
    """The alphabet a checkpoint was trained for, and where that is said: an exported model's own
    metadata, else the run state, else the directory's alphabet.txt; None if nothing says."""
    if prefix.endswith(EXPORT_SUFFIXES) and os.path.isfile(prefix):
        return alphabet_record(open_exported(prefix).alphabet()), f"{prefix} (metadata_alphabet)"
    state = read_run_state(prefix)
    if state and state.alphabet is not None:
        return state.alphabet, prefix + ".json"
    path = os.path.join(os.path.dirname(prefix), "alphabet.txt")
    if os.path.isfile(path):
        return load_alphabet(path).labels, path
    return None


def check_alphabet(prefix: str, alphabet: AnyAlphabet) -> None:
    """Refuse to load an output layer trained for another alphabet. A different size fails on shapes;
    the same size with other labels (a reordered or edited alphabet.txt) would load silently and
    decode every character wrong."""
    found = source_alphabet(prefix)
    if found is None:
        return
    theirs, where = found
    ours = alphabet_record(alphabet)
    if theirs == ours:
        return

    def describe(record: AlphabetRecord) -> str:
        return record if isinstance(record, str) else f"{len(record)} labels"

    difference = ""
    if not isinstance(theirs, str) and not isinstance(ours, str):
        i = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
        there = repr(theirs[i]) if i < len(theirs) else "absent"
        here = repr(ours[i]) if i < len(ours) else "absent"
        difference = f"; label {i} is {there} there and {here} here"
    raise CheckpointError(
        f"{prefix} was trained for another alphabet ({where}: {describe(theirs)}; this run: "
        f"{describe(ours)}{difference}). Use the checkpoint's alphabet to fine-tune, or "
        "--drop_source_layers 1 to transfer to a new one"
    )


def shared_output_columns(source_labels: list[str], target_labels: list[str]) -> list[int | None]:
    """For each class of the new output layer, the class of the old one predicting the same symbol
    (blank to blank), or None for a symbol the source alphabet lacks."""
    index = {label: i for i, label in enumerate(source_labels)}
    return [index.get(label) for label in target_labels] + [len(source_labels)]


@dataclass
class LoadReport:
    """What a load did to every tensor: (name, TF shape, action), in graph order."""

    source: str
    rows: list[tuple[str, tuple[int, ...], str]]
    learning_rate_from: str
    global_step: int
    source_classes: int
    target_classes: int
    weights_only: bool = False  # the source was an exported model: no optimizer state

    @property
    def loaded(self) -> list[str]:
        return [name for name, _, action in self.rows if action == "loaded"]

    def log(self, detailed: bool = False, frozen: Collection[str] = frozenset()) -> None:
        """One line per variable with what happened to it and its Adam moments (at INFO when `detailed`,
        else DEBUG), then a summary. `frozen`: layer scopes that will not train at first."""
        emit = log.info if detailed else log.debug
        moments: dict[str, set[str]] = {}
        for name, _, action in self.rows:
            if name.endswith(("/Adam", "/Adam_1")):
                moments.setdefault(name.rsplit("/", 1)[0], set()).add(action)
        variables = [(n, s, a) for n, s, a in self.rows if not n.endswith(("/Adam", "/Adam_1"))]
        width = max(len(name) for name, _, _ in variables)
        for name, shape, action in variables:
            slots = moments.get(name, set())
            note = (
                ""
                if not slots
                else (", with its Adam moments" if slots == {action} else f"; Adam moments: {', '.join(sorted(slots))}")
            )
            if name.split("/")[0] in frozen and action == "loaded":
                note += ", frozen"
            emit(f"  {name:<{width}}  {list(shape)!s:<11} {action}{note}")
        changed = sorted({n.split("/")[0] for n, _, a in self.rows if "re-initialised" in a})
        log.info(
            f"Loaded {len(self.loaded)} of {len(self.rows)} tensors from {self.source}"
            + (f"; re-initialised: {', '.join(changed)}" if changed else "")
            + f". Output layer: {self.source_classes} classes in the checkpoint, {self.target_classes} in this "
            f"model (alphabet of {self.target_classes - 1} labels + blank). "
            + (f"Learning rate from {self.learning_rate_from}; " if self.learning_rate_from else "")
            + f"global step {self.global_step}"
            + ("; an exported model holds no optimizer state: Adam moments start at zero" if self.weights_only else "")
        )


def load_into(
    prefix: str,
    model: DeepSpeech,
    optimizer: TFAdam | None = None,
    learning_rate: float = 0.001,
    force_initialize_learning_rate: bool = False,
    drop_source_layers: int = 0,
    output_columns: list[int | None] | None = None,
    reader: TensorReader | None = None,
) -> LoadReport:
    """Load a checkpoint into an initialised model and optimiser. Every name and shape is checked
    before any parameter changes, so a failed load leaves the model as it was.

    Dropped tensors keep the model's fresh initialisation (their Adam moments become zero). With
    `output_columns` (see shared_output_columns) a dropped output layer still takes the columns of
    the symbols both alphabets share, with their moments. Without an optimiser (evaluation, export)
    the Adam moments are neither read nor allocated, which saves two thirds of the memory."""
    ckpt = reader or open_checkpoint(prefix)
    weights_only = getattr(ckpt, "weights_only", False)  # an exported model: no Adam, step or learning rate
    dropped = dropped_substrings(drop_source_layers)
    is_dropped = lambda name: any(s in name for s in dropped)
    source_classes = ckpt.shape("layer_6/bias")[0] if "layer_6/bias" in ckpt else 0
    if output_columns is not None:
        if len(output_columns) != model.n_classes:
            raise ValueError(f"output_columns has {len(output_columns)} entries for {model.n_classes} classes")
        if max((c for c in output_columns if c is not None), default=-1) >= source_classes:
            raise CheckpointError(
                f"{prefix}: its output layer has {source_classes} classes, fewer than the source "
                "alphabet it should belong to"
            )
    # (name, variable, Adam slot or None, where its value comes from: the checkpoint's name, None when
    # dropped, "missing", its TF shape, the output columns kept)
    plan: list[tuple[str, Variable, int | None, str | None, tuple[int, ...], list[int | None] | None]] = []
    missing: list[str] = []
    for var in variables(model):
        expected = var.shape
        for suffix, slot in (("", None), ("/Adam", 0), ("/Adam_1", 1)) if optimizer else (("", None),):
            name = var.name + suffix
            columns = None
            if is_dropped(name):
                if output_columns is None or not name.startswith("layer_6") or name not in ckpt:
                    plan.append((name, var, slot, None, expected, None))
                    continue
                columns = output_columns
                shape = tuple(ckpt.shape(name))
                if shape[:-1] != expected[:-1]:
                    raise CheckpointError(_shape_message(prefix, name, shape, expected, model))
            elif name not in ckpt and weights_only and slot is not None:
                plan.append((name, var, slot, "none exported", expected, None))
                continue
            elif name not in ckpt:
                missing.append(name)
                plan.append((name, var, slot, "missing", expected, None))
                continue
            else:
                shape = tuple(ckpt.shape(name))
                if shape != expected:
                    raise CheckpointError(_shape_message(prefix, name, shape, expected, model))
            _check_dtype(ckpt, prefix, name, np.floating)
            plan.append((name, var, slot, name, expected, columns))
    not_slots = [n for n in missing if "Adam" not in n]
    if not_slots:
        raise CheckpointError(
            f"{prefix}: checkpoint lacks {', '.join(not_slots)}; it is not a DeepSpeech checkpoint "
            "of this geometry (check --layer_norm and --n_hidden)"
        )
    if missing:
        # A CuDNN-trained checkpoint has no Adam moments for the canonical LSTM: start them at zero.
        log.warn(
            f"{len(missing)} Adam moment tensors missing from {prefix} (a CuDNN-trained checkpoint?); "
            "they start at zero"
        )
    for name in ("beta1_power", "beta2_power", "global_step") if not weights_only else ():
        if name not in ckpt:
            raise CheckpointError(f"{prefix}: checkpoint lacks {name}")
        _check_dtype(ckpt, prefix, name, np.integer if name == "global_step" else np.floating)
    if "learning_rate" in ckpt:
        _check_dtype(ckpt, prefix, "learning_rate", np.floating)

    rows = []
    with torch.no_grad():
        for name, var, slot, source, shape, columns in plan:
            if slot is None:
                targets = var.params
            else:
                assert optimizer is not None  # slots are planned only with an optimiser
                targets = [optimizer.slots(p)[slot] for p in var.params]
            if slot is not None and (source in (None, "missing", "none exported") or columns is not None):
                for target in targets:
                    target.zero_()
            if source in (None, "missing", "none exported"):
                rows.append((name, shape, _UNLOADED[source]))
                continue
            value = torch.from_numpy(np.asarray(ckpt.get(source), dtype=np.float32))
            if columns is not None:
                kept = [(j, i) for j, i in enumerate(columns) if i is not None]
                merged = var.to_tf(targets).to("cpu", copy=True)  # beside `value`, wherever the model is
                merged[..., [j for j, _ in kept]] = value[..., [i for _, i in kept]]
                value = merged
            var.load_tf(targets, value)
            del value  # before the next tensor is read: one checkpoint tensor in memory at a time
            rows.append(
                (
                    name,
                    shape,
                    "loaded"
                    if columns is None
                    else f"{len(kept)} of {shape[-1]} columns loaded (shared symbols), the rest re-initialised",
                )
            )
        accumulators = (
            []
            if optimizer is None
            else [
                ("beta1_power", optimizer.beta1_power, optimizer.defaults["beta1"]),
                ("beta2_power", optimizer.beta2_power, optimizer.defaults["beta2"]),
            ]
        )
        for name, accumulator, beta in accumulators:
            if weights_only:
                accumulator.fill_(beta)
                rows.append((name, (), "initialised (an exported model has none)"))
            elif is_dropped(name):
                accumulator.fill_(beta)
                rows.append((name, (), "re-initialised"))
            else:
                accumulator.fill_(float(ckpt.get(name)))
                rows.append((name, (), "loaded"))
    global_step = 0 if weights_only else int(ckpt.get("global_step"))
    rows.append(("global_step", (), "0 (an exported model has none)" if weights_only else "loaded"))
    if optimizer is None:
        lr_from = ""
    elif force_initialize_learning_rate or "learning_rate" not in ckpt:
        optimizer.lr, lr_from = learning_rate, "--learning_rate"
        rows.append(("learning_rate", (), "from --learning_rate" if weights_only else "re-initialised"))
    else:
        optimizer.lr, lr_from = float(ckpt.get("learning_rate")), "the checkpoint"
        rows.append(("learning_rate", (), "loaded"))
    return LoadReport(prefix, rows, lr_from, global_step, source_classes, model.n_classes, weights_only)


_UNLOADED = {
    None: "re-initialised",
    "missing": "zero (not in the checkpoint)",
    "none exported": "zero (an exported model has none)",
}


def _check_dtype(ckpt, prefix: str, name: str, kind) -> None:
    dtype = np.dtype(ckpt.dtype(name))
    if not np.issubdtype(dtype, kind):
        want = "an integer" if kind is np.integer else "a floating-point"
        raise CheckpointError(
            f"{prefix}: {name} is {dtype.name}, not {want} tensor; this is not a DeepSpeech checkpoint"
        )


def _shape_message(prefix, name, shape, expected, model) -> str:
    head = f"{prefix}: tensor {name} has shape {list(shape)} but the model needs {list(expected)}"
    if name.startswith("layer_6") and shape[:-1] == expected[:-1]:
        return (
            f"{head}: the checkpoint's output layer has {shape[-1] - 1} labels and the alphabet has "
            f"{model.n_classes - 1}. To train on a new alphabet, re-initialise the output layer with "
            "--drop_source_layers 1 (or --alphabet_config_path the checkpoint's alphabet.txt)"
        )
    if name.startswith("layer_1") and shape[0] != expected[0]:
        return f"{head}: the input features differ from the checkpoint's"
    return f"{head}: the checkpoint was trained with another --n_hidden; pass --n_hidden {shape[-1]}"
