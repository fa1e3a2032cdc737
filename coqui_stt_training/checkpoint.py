"""Checkpoint directories, as Coqui lays them out (docs/compatibility.md, "Checkpoints").

A checkpoint `<dir>/<kind>-<step>` is `<prefix>.safetensors` (the tensors, under layout.py's names) plus
`<prefix>.json` (run_state.RunState); Coqui's own TF checkpoints (`<prefix>.index` + data shards) are
read too. The state files `checkpoint` and `best_dev_checkpoint` name the newest `train` and `best_dev`
checkpoints as TensorFlow writes them, and `flags.txt` and `alphabet.txt` sit beside them, so a directory
looks like Coqui's. Files are written under temporary names and renamed; the state file changes last.
Nothing here is ever unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import safetensors.numpy

from . import log
from .errors import UserError
from .exported import EXPORT_SUFFIXES, exported_model_file, open_exported
from .files import read_range, remove_stale_temporaries, write_atomically, write_file_atomically
from .formats.tf_bundle import TFCheckpointReader
from .formats.tf_state_file import read_state_file, read_state_file_all, write_state_file
from .layout import TensorReader
from .run_state import RunState

STATE_FILES = {"train": "checkpoint", "best_dev": "best_dev_checkpoint"}


class CheckpointError(UserError):
    pass


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
    """A safetensors file read lazily, one tensor at a time with a single copy. safetensors.safe_open loads
    as fast but maps the file, which adds it to the process's memory: loading a release-sized model's 670 MB
    peaks 235 MB higher with it (docs/benchmarks.md). The header is checked against the file before anything
    is read: names, dtypes, shapes and byte ranges."""

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
        self._entries: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
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


def open_checkpoint(prefix: str) -> TensorReader:
    """Our safetensors checkpoint or a Coqui/TensorFlow one, whichever is at this prefix; or an exported
    model (a .tflite or .pb file: its weights only)."""
    if prefix.endswith(EXPORT_SUFFIXES) and os.path.isfile(prefix):
        return open_exported(prefix)
    if os.path.isfile(prefix + ".safetensors"):
        return SafetensorsCheckpoint(prefix)
    if os.path.isfile(prefix + ".index"):
        return TFCheckpointReader(prefix)
    raise CheckpointError(f"{prefix}: no checkpoint there (neither {prefix}.safetensors nor {prefix}.index)")


def read_run_state(prefix: str) -> RunState | None:
    """The run state saved with a checkpoint; None for a checkpoint without one (Coqui's)."""
    path = prefix + ".json"
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return RunState.from_json(record)
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint state ({e})") from None


def read_flags_file(directory: str) -> dict[str, Any] | None:
    """A checkpoint directory's flags.txt (the flags of the run that made it), or None if it has none or
    an old one that is not JSON (Coqui ignores those too)."""
    path = os.path.join(directory, "flags.txt") if directory else ""
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            flags = json.load(f)
    except (ValueError, UnicodeDecodeError):
        return None
    return flags if isinstance(flags, dict) else None


# ---- finding the checkpoint to load -------------------------------------------------------------


def find_checkpoint(directory: str, kind: str) -> str | None:
    """Prefix of the newest `kind` checkpoint ('train' or 'best_dev') that the state file names, if any."""
    return read_state_file(os.path.join(directory, STATE_FILES[kind]))


def newest_checkpoint(directory: str) -> str | None:
    """The checkpoint this directory's runs saved last, train or best_dev (by the run state's save_serial)."""
    candidates = [p for p in (find_checkpoint(directory, kind) for kind in STATE_FILES) if p]
    serials = {p: state.save_serial for p in candidates if (state := read_run_state(p)) and state.save_serial}
    return max(serials, key=serials.__getitem__, default=None)


def source_export_file(location: str) -> str | None:
    """The exported model a load location names: a .tflite or .pb file, or a directory that holds one and
    no checkpoint (checkpoints come first)."""
    if os.path.isdir(location) and any(find_checkpoint(location, kind) for kind in STATE_FILES):
        return None
    return exported_model_file(location)


LOAD_ORDER = {"auto": ["best", "last"], "best": ["best"], "last": ["last"], "init": []}
_KIND = {"best": "best_dev", "last": "train"}
_WHAT = {"best": "best validating", "last": "most recent"}


@dataclass(frozen=True)
class Search:
    """Where Coqui's load order (--load_train or --load_evaluate) found a checkpoint in a directory:
    auto is best_dev, then the last train checkpoint (then a fresh start, for training only)."""

    prefix: str | None
    found: str | None = None  # "best" or "last"
    tried: list[str] = field(default_factory=list)  # those not found before it, in order

    def log(self) -> None:
        """Coqui's lines for this search."""
        for which in self.tried:
            log.info(f"Could not find {_WHAT[which]} checkpoint.")
        if self.found == "exported":
            log.info(f"Loading the exported model {self.prefix} (its weights; it holds no optimizer state)")
        elif self.found:
            log.info(f"Loading {_WHAT[self.found]} checkpoint from {self.prefix}")


def search(directory: str, method: str, exported: bool = False) -> Search:
    """Search `directory` in --load_train/--load_evaluate order. A directory that holds only PyTorch pickles
    is not taken for an empty one (which would train from scratch): that is a CheckpointError. With
    `exported` (a source to load from, never a save directory), `directory` may also be an exported model
    or a directory holding one and no checkpoint."""
    tried: list[str] = []
    if exported and method != "init" and os.path.isfile(directory):
        model = exported_model_file(directory)
        if model is None:
            raise CheckpointError(f"{directory}: not a checkpoint directory nor an exported model (.tflite, .pb)")
        return Search(model, "exported")
    for which in LOAD_ORDER[method]:
        prefix = find_checkpoint(directory, _KIND[which]) if directory else None
        if prefix:
            return Search(prefix, which, tried)
        tried.append(which)
    model = exported_model_file(directory) if exported and method != "init" else None
    if model:
        return Search(model, "exported", tried)
    if directory:
        refuse_pickles(directory)
    return Search(None, None, tried)


# ---- saving -----------------------------------------------------------------------------------


def save(directory: str, kind: str, tensors: dict[str, np.ndarray], state: RunState, max_to_keep: int) -> str:
    """Write `<kind>-<step>` and point the state file at it; keep at most max_to_keep of this kind.

    The order makes every instant safe to die at: tensors and run state go to temporary files that are
    renamed once on disk, the state file changes only after both, and old checkpoints are removed only
    after the state file no longer names them. Pruning keeps the newest; best_dev has its own state file,
    so train pruning never touches it. A failed write (disk full, read-only) is a CheckpointError that
    names the file, and the state file still names the last good checkpoint."""
    state.global_step = int(tensors["global_step"])
    prefix = os.path.join(directory, f"{kind}-{state.global_step}")
    state_file = os.path.join(directory, STATE_FILES[kind])
    try:
        os.makedirs(directory, exist_ok=True)
        remove_stale_temporaries(directory)
        write_atomically(prefix + ".safetensors", lambda p: safetensors.numpy.save_file(tensors, p))
        write_file_atomically(prefix + ".json", json.dumps(state.to_json(), indent=2))
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
            with contextlib.suppress(FileNotFoundError):
                os.remove(old + ext)
    return prefix


def update_run_state(prefix: str, state: RunState) -> None:
    """Rewrite a saved checkpoint's run state (atomically; the tensors are not rewritten)."""
    try:
        write_file_atomically(prefix + ".json", json.dumps(state.to_json(), indent=2))
    except OSError as e:
        raise CheckpointError(
            f"cannot update {prefix}.json ({e.strerror or e}); the checkpoint itself is intact"
        ) from None


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
