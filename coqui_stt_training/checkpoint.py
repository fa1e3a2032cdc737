"""Checkpoints: every tensor under Coqui's TensorFlow variable name and layout (spec §2.1).

A checkpoint `<dir>/<kind>-<step>` is `<prefix>.safetensors` (tensors) plus `<prefix>.json` (run state).
The state files `checkpoint` and `best_dev_checkpoint` are written as TensorFlow writes them, so a
directory looks like Coqui's. Coqui's own TF checkpoints (`<prefix>.index` + data shards) load too.
Files are written under temporary names and renamed; the state file changes last.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import safetensors.numpy
import torch

from . import log
from .alphabet import alphabet_record, load_alphabet
from .model import DeepSpeech
from .optimizer import TFAdam
from .tf_checkpoint import (
    TMP_MARK,
    TFCheckpointReader,
    read_range,
    read_state_file,
    read_state_file_all,
    write_atomically,
    write_file_atomically,
    write_state_file,
)

LSTM_SCOPE = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell"
STATE_FILES = {"train": "checkpoint", "best_dev": "best_dev_checkpoint"}
FORMAT_VERSION = 1
# --drop_source_layers N re-initialises every variable whose name contains one of the last N of these
# (Coqui's substring rule, spec §4.3; N = 5 also matches beta2_power, a quirk we keep).
DROPPABLE = ["2", "3", "lstm", "5", "6"]
LAYER_SCOPES = ("layer_1", "layer_2", "layer_3", "cudnn_lstm", "layer_5", "layer_6")


class CheckpointError(ValueError):
    pass


# ---- TensorFlow names and layouts -------------------------------------------------------------


@dataclass
class Variable:
    """One TF variable, made of one or more torch tensors: `to_tf` joins them into TF's layout,
    `load_tf(targets, value)` copies a TF-layout value into them in place (no full-size temporary:
    a release model's LSTM kernel is 128 MiB). The same conversion serves the parameters and their
    Adam moments."""

    name: str
    params: list[torch.Tensor]
    shape: tuple[int, ...]  # in TF's layout
    to_tf: Callable[[list[torch.Tensor]], torch.Tensor]
    load_tf: Callable[[list[torch.Tensor], torch.Tensor], None]


# torch orders an LSTM's gate blocks i, f, g, o; TF's kernel and bias i, c(=g), f, o.
GATES_FROM_TF = (0, 2, 1, 3)  # torch block k holds TF block GATES_FROM_TF[k], and the other way round


def _swap_middle_gates(x: torch.Tensor, dim: int) -> torch.Tensor:
    blocks = x.chunk(4, dim)
    return torch.cat([blocks[k] for k in GATES_FROM_TF], dim)


def _load_same(targets, value) -> None:
    targets[0].copy_(value)


def _load_lstm_kernel(targets, value) -> None:
    """TF kernel [in + H, 4H] (rows: input then recurrent) into torch weight_ih [4H, in], weight_hh [4H, H]."""
    weight_ih, weight_hh = targets
    n_in, hidden = weight_ih.shape[1], weight_ih.shape[0] // 4
    for k, tf_block in enumerate(GATES_FROM_TF):
        columns = value[:, tf_block * hidden : (tf_block + 1) * hidden]
        weight_ih[k * hidden : (k + 1) * hidden].copy_(columns[:n_in].t())
        weight_hh[k * hidden : (k + 1) * hidden].copy_(columns[n_in:].t())


def _load_lstm_bias(targets, value) -> None:
    hidden = value.shape[0] // 4
    for k, tf_block in enumerate(GATES_FROM_TF):
        targets[0][k * hidden : (k + 1) * hidden].copy_(value[tf_block * hidden : (tf_block + 1) * hidden])


def variables(model: DeepSpeech) -> list[Variable]:
    out = []
    for n in (1, 2, 3, 5, 6):
        layer = getattr(model, f"layer_{n}")
        tensors = [("weights", layer.weights), ("bias", layer.bias)]
        if layer.LayerNorm is not None:
            tensors += [("LayerNorm/beta", layer.LayerNorm.beta), ("LayerNorm/gamma", layer.LayerNorm.gamma)]
        out += [Variable(f"layer_{n}/{name}", [t], tuple(t.shape), lambda ts: ts[0], _load_same) for name, t in tensors]
    lstm, n_in, hidden = model.lstm, model.lstm.input_size, model.lstm.hidden_size
    out.append(
        Variable(
            f"{LSTM_SCOPE}/kernel",
            [lstm.weight_ih_l0, lstm.weight_hh_l0],
            (n_in + hidden, 4 * hidden),
            lambda ts: _swap_middle_gates(torch.cat(ts, 1), 0).t(),
            _load_lstm_kernel,
        )
    )
    out.append(
        Variable(
            f"{LSTM_SCOPE}/bias",
            [lstm.bias_ih_l0],
            (4 * hidden,),
            lambda ts: _swap_middle_gates(ts[0], 0),
            _load_lstm_bias,
        )
    )
    # Variables are listed in the order the layers sit in the graph (order matters for the load report).
    order = {f"layer_{n}": i for i, n in enumerate((1, 2, 3, 0, 5, 6))}
    return sorted(out, key=lambda v: order.get(v.name.split("/")[0], 3))


def to_tensors(model: DeepSpeech, optimizer: TFAdam, global_step: int) -> dict[str, np.ndarray]:
    """Everything Coqui's checkpoint holds, as numpy arrays in TF layout."""
    tensors = {}
    with torch.no_grad():
        for var in variables(model):
            tensors[var.name] = var.to_tf(var.params)
            moments = [optimizer.slots(p) for p in var.params]
            tensors[f"{var.name}/Adam"] = var.to_tf([m for m, _ in moments])
            tensors[f"{var.name}/Adam_1"] = var.to_tf([v for _, v in moments])
    arrays = {k: np.ascontiguousarray(v.detach().cpu().float().numpy()) for k, v in tensors.items()}
    arrays["beta1_power"] = np.array(optimizer.beta1_power.item(), dtype=np.float32)
    arrays["beta2_power"] = np.array(optimizer.beta2_power.item(), dtype=np.float32)
    arrays["global_step"] = np.array(global_step, dtype=np.int64)
    arrays["learning_rate"] = np.array(optimizer.lr, dtype=np.float32)
    return arrays


# ---- reading either format --------------------------------------------------------------------


SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


class SafetensorsCheckpoint:
    """A safetensors file read lazily, one tensor at a time with a single copy (the safetensors
    package's reader makes more, which a release-sized model cannot afford). The header is checked
    against the file before anything is read: names, dtypes, shapes and byte ranges."""

    def __init__(self, prefix: str):
        self.path = prefix + ".safetensors"
        try:
            with open(self.path, "rb") as f:
                head = f.read(8)
                if looks_like_pickle(head):
                    raise CheckpointError(f"{self.path}: {PICKLE_REFUSAL}")
                header_size = int.from_bytes(head, "little") if len(head) == 8 else -1
                if not 2 <= header_size <= 100 << 20:
                    raise ValueError("no safetensors header")
                header = json.loads(f.read(header_size).decode("utf-8"))
            file_size = os.path.getsize(self.path)
        except CheckpointError:
            raise
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot read ({e.strerror})") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self.path}: not a safetensors file ({e})") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{self.path}: not a safetensors file (header is not a JSON object)")
        header.pop("__metadata__", None)
        self._entries = {}
        data_start = 8 + header_size
        for name, info in header.items():
            try:
                dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]])
                shape = tuple(int(n) for n in info["shape"])
                begin, end = (int(n) for n in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise CheckpointError(f"{self.path}: tensor {name!r} has an unusable header entry {info!r}") from None
            if min(shape, default=0) < 0 or end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
                raise CheckpointError(
                    f"{self.path}: tensor {name!r}: shape {list(shape)} does not fit its {end - begin} bytes"
                )
            if begin < 0 or data_start + end > file_size:
                raise CheckpointError(
                    f"{self.path}: truncated: tensor {name!r} needs bytes up to "
                    f"{data_start + end}, the file has {file_size}"
                )
            self._entries[name] = (dtype, shape, data_start + begin, end - begin)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def dtype(self, name: str) -> np.dtype:
        return self._entries[name][0]

    def get(self, name: str) -> np.ndarray:
        dtype, shape, offset, size = self._entries[name]
        data = read_range(self.path, offset, size)
        if len(data) != size:
            raise CheckpointError(f"{self.path}: truncated while reading tensor {name!r}")
        return np.frombuffer(data, dtype).reshape(shape)


PICKLE_REFUSAL = (
    "a Python pickle (PyTorch's torch.save format), not a checkpoint of ours; refusing to load it, "
    "because unpickling runs whatever code the file contains. Checkpoints here are safetensors + JSON, "
    "or TensorFlow's .index/.data files"
)
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def looks_like_pickle(head: bytes) -> bool:
    """A pickle (protocol 2-5 opcode) or torch.save's zip archive (which holds one)."""
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith(b"PK\x03\x04")


def refuse_pickles(directory: str) -> None:
    """A directory that holds only PyTorch pickles is not silently treated as empty (which would train from
    scratch); it is an error that says why we do not open them."""
    found = sorted(n for n in os.listdir(directory) if n.endswith(PICKLE_SUFFIXES)) if os.path.isdir(directory) else []
    for name in found:
        with open(os.path.join(directory, name), "rb") as f:
            if looks_like_pickle(f.read(8)):
                raise CheckpointError(f"{os.path.join(directory, name)}: {PICKLE_REFUSAL}")


def open_checkpoint(prefix: str):
    """Our safetensors checkpoint or a Coqui/TensorFlow one, whichever is at this prefix."""
    if os.path.isfile(prefix + ".safetensors"):
        return SafetensorsCheckpoint(prefix)
    if os.path.isfile(prefix + ".index"):
        return TFCheckpointReader(prefix)
    raise CheckpointError(f"{prefix}: no checkpoint there (neither {prefix}.safetensors nor {prefix}.index)")


def read_run_state(prefix: str) -> dict:
    path = prefix + ".json"
    if not os.path.isfile(path):
        return {}  # a Coqui checkpoint has no run state beyond its tensors
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint state ({e})") from None


def find_checkpoint(directory: str, kind: str) -> str | None:
    """Prefix of the newest `kind` checkpoint ('train' or 'best_dev') that the state file names, if any."""
    return read_state_file(os.path.join(directory, STATE_FILES[kind]))


def newest_checkpoint(directory: str) -> str | None:
    """The checkpoint this directory's runs saved last, train or best_dev (by the run state's save_serial)."""
    candidates = [p for p in (find_checkpoint(directory, kind) for kind in STATE_FILES) if p]
    serials = {p: read_run_state(p).get("save_serial") for p in candidates}
    numbered = [p for p in candidates if isinstance(serials[p], int)]
    return max(numbered, key=serials.get, default=None)


def check_alphabet(prefix: str, alphabet) -> None:
    """Refuse to load an output layer trained for another alphabet. A different size fails on shapes;
    the same size with other labels (a reordered or edited alphabet.txt) would load silently and
    decode every character wrong. The alphabet comes from the run state, else the directory's alphabet.txt."""
    state = read_run_state(prefix)
    if "alphabet" in state:
        theirs, where = state["alphabet"], prefix + ".json"
    else:
        path = os.path.join(os.path.dirname(prefix), "alphabet.txt")
        if not os.path.isfile(path):
            return
        theirs, where = load_alphabet(path).labels, path
    ours = alphabet_record(alphabet)
    if theirs == ours:
        return

    def describe(record) -> str:
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


# ---- loading into a model ---------------------------------------------------------------------


@dataclass
class LoadReport:
    """What a load did to every tensor: (name, TF shape, action), in graph order."""

    source: str
    rows: list[tuple[str, tuple[int, ...], str]]
    learning_rate_from: str
    global_step: int
    source_classes: int
    target_classes: int

    @property
    def loaded(self) -> list[str]:
        return [name for name, _, action in self.rows if action == "loaded"]

    @property
    def reinitialised(self) -> list[str]:
        return [name for name, _, action in self.rows if action == "re-initialised"]

    def log(self, detailed: bool = False, frozen: set[str] = frozenset()) -> None:
        """One line per variable with what happened to it and its Adam moments (at INFO when `detailed`,
        else DEBUG), then a summary. `frozen`: layer scopes that will not train at first."""
        emit = log.info if detailed else log.debug
        moments = {}
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
        changed = sorted({n.split("/")[0] for n, _, a in self.rows if a != "loaded" and not a.startswith("zero")})
        log.info(
            f"Loaded {len(self.loaded)} of {len(self.rows)} tensors from {self.source}"
            + (f"; re-initialised: {', '.join(changed)}" if changed else "")
            + f". Output layer: {self.source_classes} classes in the checkpoint, {self.target_classes} in this "
            f"model (alphabet of {self.target_classes - 1} labels + blank). "
            + (f"Learning rate from {self.learning_rate_from}; " if self.learning_rate_from else "")
            + f"global step {self.global_step}"
        )


def dropped_substrings(drop_source_layers: int, warn: bool = True) -> list[str]:
    if drop_source_layers >= 6 and warn:
        log.warn(
            "The checkpoint only has 6 layers, but you are trying to drop all of them or more than all of them. "
            "Continuing and dropping only 5 layers."
        )
    drop_source_layers = min(drop_source_layers, 5)
    return DROPPABLE[-drop_source_layers:] if drop_source_layers > 0 else []


def dropped_layers(drop_source_layers: int) -> set[str]:
    """Layer scopes that --drop_source_layers N re-initialises (the substring rule applied to scope names)."""
    dropped = dropped_substrings(drop_source_layers, warn=False)
    return {scope for scope in LAYER_SCOPES if any(s in scope for s in dropped)}


def shared_output_columns(source_labels: list[str], target_labels: list[str]) -> list[int | None]:
    """For each class of the new output layer, the class of the old one predicting the same symbol
    (blank to blank), or None for a symbol the source alphabet lacks."""
    index = {label: i for i, label in enumerate(source_labels)}
    return [index.get(label) for label in target_labels] + [len(source_labels)]


def load_into(
    prefix: str,
    model: DeepSpeech,
    optimizer: TFAdam | None,
    learning_rate: float,
    force_initialize_learning_rate: bool = False,
    drop_source_layers: int = 0,
    output_columns: list[int | None] | None = None,
) -> LoadReport:
    """Load a checkpoint into an initialised model and optimiser. Every name and shape is checked
    before any parameter changes, so a failed load leaves the model as it was.

    Dropped tensors keep the model's fresh initialisation (their Adam moments become zero). With
    `output_columns` (see shared_output_columns) a dropped output layer still takes the columns of
    the symbols both alphabets share, with their moments. Without an optimiser (evaluation, export)
    the Adam moments are neither read nor allocated, which saves two thirds of the memory."""
    ckpt = open_checkpoint(prefix)
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
    plan, missing = [], []
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
        # A CuDNN-trained checkpoint has no Adam moments for the canonical LSTM (spec §2.1): start them at zero.
        log.warn(
            f"{len(missing)} Adam moment tensors missing from {prefix} (a CuDNN-trained checkpoint?); "
            "they start at zero"
        )
    for name in ("beta1_power", "beta2_power", "global_step"):
        if name not in ckpt:
            raise CheckpointError(f"{prefix}: checkpoint lacks {name}")
        _check_dtype(ckpt, prefix, name, np.integer if name == "global_step" else np.floating)
    if "learning_rate" in ckpt:
        _check_dtype(ckpt, prefix, "learning_rate", np.floating)

    rows = []
    with torch.no_grad():
        for name, var, slot, source, shape, columns in plan:
            targets = var.params if slot is None else [optimizer.slots(p)[slot] for p in var.params]
            if slot is not None and (source in (None, "missing") or columns is not None):
                for target in targets:
                    target.zero_()
            if source in (None, "missing"):
                rows.append((name, shape, "re-initialised" if source is None else "zero (not in the checkpoint)"))
                continue
            value = torch.from_numpy(np.asarray(ckpt.get(source), dtype=np.float32))
            if columns is not None:
                kept = [(j, i) for j, i in enumerate(columns) if i is not None]
                merged = var.to_tf(targets).clone()
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
            if is_dropped(name):
                accumulator.fill_(beta)
                rows.append((name, (), "re-initialised"))
            else:
                accumulator.fill_(float(ckpt.get(name)))
                rows.append((name, (), "loaded"))
    global_step = int(ckpt.get("global_step"))
    rows.append(("global_step", (), "loaded"))
    if optimizer is None:
        lr_from = ""
    elif force_initialize_learning_rate or "learning_rate" not in ckpt:
        optimizer.lr, lr_from = learning_rate, "--learning_rate"
        rows.append(("learning_rate", (), "re-initialised"))
    else:
        optimizer.lr, lr_from = float(ckpt.get("learning_rate")), "the checkpoint"
        rows.append(("learning_rate", (), "loaded"))
    return LoadReport(prefix, rows, lr_from, global_step, source_classes, model.n_classes)


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


# ---- saving -----------------------------------------------------------------------------------


def save(directory: str, kind: str, tensors: dict[str, np.ndarray], run_state: dict, max_to_keep: int) -> str:
    """Write `<kind>-<step>` and point the state file at it; keep at most max_to_keep of this kind.

    The order makes every instant safe to die at: tensors and run state go to temporary files that are
    renamed once on disk, the state file changes only after both, and old checkpoints are removed only
    after the state file no longer names them. Pruning keeps the newest; best_dev has its own state file,
    so train pruning never touches it. A failed write (disk full, read-only) is a CheckpointError that
    names the file, and the state file still names the last good checkpoint."""
    step = int(tensors["global_step"])
    prefix = os.path.join(directory, f"{kind}-{step}")
    state = {"format_version": FORMAT_VERSION, "global_step": step, **run_state}
    state_file = os.path.join(directory, STATE_FILES[kind])
    try:
        os.makedirs(directory, exist_ok=True)
        _remove_stale_temporaries(directory)
        write_atomically(prefix + ".safetensors", lambda p: safetensors.numpy.save_file(tensors, p))
        write_file_atomically(prefix + ".json", json.dumps(state, indent=2))
        kept = [p for p in read_state_file_all(state_file) if p != prefix] + [prefix]
        kept, removed = kept[-max(max_to_keep, 1) :], kept[: -max(max_to_keep, 1)]
        write_state_file(state_file, prefix, kept)
    except OSError as e:
        last = find_checkpoint(directory, kind) if os.path.isfile(state_file) else None
        raise CheckpointError(
            f"cannot write checkpoint {prefix} ({e.strerror or e}); "
            + (f"the last good one, {last}, is unchanged" if last else "no earlier checkpoint")
        ) from None
    for old in removed:
        for ext in (".safetensors", ".json", ".index", ".data-00000-of-00001", ".meta"):
            try:
                os.remove(old + ext)
            except FileNotFoundError:
                pass
    return prefix


def check_writable(directory: str) -> None:
    """Fail before training, not at the first save hours later (read-only mount, wrong owner, a file
    in the way)."""
    probe = os.path.join(directory, ".write-test")
    try:
        os.makedirs(directory, exist_ok=True)
        write_file_atomically(probe, "can write\n")
        os.remove(probe)
    except OSError as e:
        raise CheckpointError(f"cannot write to the checkpoint directory {directory} ({e.strerror or e})") from None


def update_run_state(prefix: str, **changes) -> None:
    """Change fields of a saved checkpoint's run state (atomically; the tensors are not rewritten)."""
    state = read_run_state(prefix)
    state.update(changes)
    try:
        write_file_atomically(prefix + ".json", json.dumps(state, indent=2))
    except OSError as e:
        raise CheckpointError(
            f"cannot update {prefix}.json ({e.strerror or e}); the checkpoint itself is intact"
        ) from None


def _remove_stale_temporaries(directory: str) -> None:
    """Temporary files of a process that was killed mid-write (SIGKILL leaves them behind)."""
    for name in os.listdir(directory):
        _, mark, pid = name.rpartition(TMP_MARK)
        if mark and pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            try:
                os.remove(os.path.join(directory, name))
            except FileNotFoundError:
                pass


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


def write_text_once(path: str, text: str) -> None:
    """flags.txt and alphabet.txt: written only if absent, as Coqui does; never overwrite a user's file."""
    if not os.path.exists(path):
        write_file_atomically(path, text)
