"""Checkpoint directories, as Coqui lays them out (docs/compatibility.md, "Checkpoints"): saving, finding,
verifying and reading checkpoints and their state files.

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
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError

from ..formats.crc32c import crc32c
from ..formats.tf_bundle import TFCheckpointReader
from ..formats.tf_state_file import read_state_file, read_state_file_all, write_state_file
from ..system import log
from ..system.atomic_files import read_range, remove_stale_temporaries, write_file_atomically
from ..system.errors import UserError
from .from_export import EXPORT_SUFFIXES, exported_model_file, open_exported
from .layout import TensorReader
from .run_state import RunState

STATE_FILES = {"train": "checkpoint", "best_dev": "best_dev_checkpoint"}


class CheckpointError(UserError):
    pass


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose data no longer matches the checksums recorded when it was written."""


class PickleRefusedError(CheckpointError):
    """A pickle where a checkpoint should be: refused outright, never passed over as mere damage."""


class NonFiniteWeightsError(CheckpointError):
    """Weights that became NaN or infinite: never saved over a good checkpoint."""


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
    is read: names, dtypes, shapes and byte ranges; each tensor's bytes are checked against the CRC32C that
    its `.json` recorded when it was written (TensorFlow's index records the same for its files)."""

    def __init__(self, prefix: str):
        self.path = prefix + ".safetensors"
        self.checksums, self._checksums_from = recorded_checksums(prefix)
        try:
            with open(self.path, "rb") as f:
                head = f.read(8)
                if looks_like_pickle(head):
                    raise PickleRefusedError(f"{self.path}: {PICKLE_REFUSAL}")
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
        if self.checksums is not None and set(self.checksums) != set(self._entries):
            differ = sorted(set(self.checksums) ^ set(self._entries))
            raise DamagedCheckpointError(
                f"{self.path}: damaged: its tensors are not the ones {self._checksums_from} records "
                f"({', '.join(differ[:3])}{', ...' if len(differ) > 3 else ''})"
            )

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
        if self.checksums is not None and crc32c(data) != self.checksums[name]:
            raise DamagedCheckpointError(
                f"{self.path}: damaged: tensor {name!r} does not match the CRC32C checksum that "
                f"{self._checksums_from} recorded when it was written"
            )
        return np.frombuffer(data, dtype).reshape(shape)


def recorded_checksums(prefix: str) -> tuple[dict[str, int] | None, str]:
    """The CRC32C of each tensor that a safetensors checkpoint's `.json` recorded, and the file that says
    so; None for checkpoints written before checksums were recorded (a warning says they go unchecked)."""
    path = prefix + ".json"
    state = read_run_state(prefix)
    if state is None:
        log.warn_once(
            f"{path} is missing: the data of {prefix}.safetensors cannot be checked, and its run state "
            "(position in the run, histories, exact learning rate) is lost"
        )
        return None, path
    if state.crc32c is None:
        log.warn_once(f"{path} records no checksums (an earlier version wrote it): {prefix}.safetensors is unchecked")
    return state.crc32c, path


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
                raise PickleRefusedError(f"{os.path.join(directory, name)}: {PICKLE_REFUSAL}")


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


def verify(prefix: str) -> None:
    """Read every tensor of a checkpoint once, checking it against its recorded checksums (ours in the
    `.json`, TensorFlow's in the `.index`) and that its values are finite; raise CheckpointError naming
    the file if not. An exported model has no checksums: its structure is checked when it is opened."""
    key = _file_key(prefix)
    if key in _verified:
        return
    reader = open_checkpoint(prefix)
    for name in reader.names():
        value = reader.get(name)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise DamagedCheckpointError(f"{prefix}: tensor {name!r} holds NaN or infinite values")
    _verified.add(key)


_verified: set[tuple] = set()  # checkpoints verified by this process, by their files' sizes and times


def _file_key(prefix: str) -> tuple:
    stats = []
    for suffix in ("", ".safetensors", ".json", ".index", ".data-00000-of-00001"):
        with contextlib.suppress(OSError):
            st = os.stat(prefix + suffix)
            stats.append((suffix, st.st_size, st.st_mtime_ns, st.st_ino))
    return (os.path.abspath(prefix), tuple(stats))


def damage(prefix: str) -> str | None:
    """Why a checkpoint's data cannot be trusted (it differs from its checksums, is truncated, or cannot
    be read), or None if it is intact. A pickle is not damage: it is refused (PickleRefusedError)."""
    try:
        verify(prefix)
    except PickleRefusedError:
        raise
    except CheckpointError as e:
        return str(e)
    return None


def read_run_state(prefix: str) -> RunState | None:
    """The run state saved with a checkpoint; None for a checkpoint without one (Coqui's)."""
    path = prefix + ".json"
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8-sig") as f:
            record = json.load(f)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return RunState.from_json(record)
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint state ({e})") from None


# ---- finding the checkpoint to load -------------------------------------------------------------


def find_checkpoint(directory: str, kind: str, intact: bool = False) -> str | None:
    """Prefix of the newest `kind` checkpoint ('train' or 'best_dev') that the state file names, if any.
    With `intact` (where training starts), a damaged one is passed over with a warning for the newest
    intact one the state file still lists; None if none is intact."""
    state_file = os.path.join(directory, STATE_FILES[kind])
    newest = read_state_file(state_file)
    if not intact or newest is None:
        return newest
    listed = [newest] + [p for p in reversed(read_state_file_all(state_file)) if p != newest]
    for prefix in listed:
        problem = damage(prefix)
        if problem is None:
            if prefix != newest:
                log.warn_once(
                    f"Using {prefix}, the newest intact {kind} checkpoint; the damaged {newest} is kept "
                    "until a newer save replaces it"
                )
            return prefix
        log.warn_once(f"{problem}; passing over it")
    return None


def newest_checkpoint(directory: str, intact: bool = False) -> str | None:
    """The checkpoint this directory's runs saved last, train or best_dev (by the run state's save_serial);
    with `intact`, the last one whose data is intact."""
    candidates = [p for p in (find_checkpoint(directory, kind, intact) for kind in STATE_FILES) if p]
    serials = {p: state.save_serial for p in candidates if (state := read_run_state(p)) and state.save_serial}
    return max(serials, key=serials.__getitem__, default=None)


def highest_save_serial(directory: str) -> int:
    """The highest save serial of any checkpoint a state file lists, damaged or not: a new save must be
    numbered after all of them."""
    serials = [0]
    for kind in STATE_FILES:
        for prefix in read_state_file_all(os.path.join(directory, STATE_FILES[kind])):
            with contextlib.suppress(CheckpointError):
                state = read_run_state(prefix)
                serials.append(state.save_serial if state else 0)
    return max(serials)


def require_intact_checkpoints(directory: str) -> None:
    """Training does not start afresh over a directory whose every checkpoint is damaged: that would
    look like success and bury the damage."""
    listed = [p for kind in STATE_FILES if (p := find_checkpoint(directory, kind))]
    if listed and not any(find_checkpoint(directory, kind, intact=True) for kind in STATE_FILES):
        raise DamagedCheckpointError(
            f"{directory}: every checkpoint its state files list is damaged or missing (warnings above); "
            "nothing to resume from. Restore the files, or train into another --save_checkpoint_dir"
        )


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


def search(directory: str, method: str, exported: bool = False, intact: bool = False) -> Search:
    """Search `directory` in --load_train/--load_evaluate order. A directory that holds only PyTorch pickles
    is not taken for an empty one (which would train from scratch): that is a CheckpointError. With
    `exported` (a source to load from, never a save directory), `directory` may also be an exported model
    or a directory holding one and no checkpoint. With `intact` (training), damaged checkpoints are passed
    over for the newest intact one, and a directory whose every checkpoint is damaged is an error."""
    tried: list[str] = []
    if exported and method != "init" and os.path.isfile(directory):
        model = exported_model_file(directory)
        if model is None:
            raise CheckpointError(f"{directory}: not a checkpoint directory nor an exported model (.tflite, .pb)")
        return Search(model, "exported")
    for which in LOAD_ORDER[method]:
        prefix = find_checkpoint(directory, _KIND[which], intact) if directory else None
        if prefix:
            return Search(prefix, which, tried)
        tried.append(which)
    model = exported_model_file(directory) if exported and method != "init" else None
    if model:
        return Search(model, "exported", tried)
    if directory:
        refuse_pickles(directory)
        if intact and os.path.isdir(directory):
            require_intact_checkpoints(directory)
    return Search(None, None, tried)


# ---- saving -----------------------------------------------------------------------------------


def save(directory: str, kind: str, tensors: dict[str, np.ndarray], state: RunState, max_to_keep: int) -> str:
    """Write `<kind>-<step>` and point the state file at it; keep at most max_to_keep of this kind.

    The order makes every instant safe to die at: tensors and run state go to temporary files that are
    renamed once on disk, the state file changes only after both, and old checkpoints are removed only
    after the state file no longer names them. Pruning keeps the newest; best_dev has its own state file,
    so train pruning never touches it. A failed write (disk full, read-only) is a CheckpointError that
    names the file, and the state file still names the last good checkpoint. Weights that are no longer
    finite are never saved (NonFiniteWeightsError): they would replace a good checkpoint with a useless
    one. Each tensor's CRC32C goes into the run state, to be checked whenever it is read."""
    state.global_step = int(tensors["global_step"])
    prefix = os.path.join(directory, f"{kind}-{state.global_step}")
    state_file = os.path.join(directory, STATE_FILES[kind])
    not_finite = [n for n, a in tensors.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if not_finite:
        last = newest_checkpoint(directory) if os.path.isdir(directory) else None
        raise NonFiniteWeightsError(
            f"the weights are no longer finite at step {state.global_step} ({not_finite[0]} holds NaN or "
            "infinite values): not saving them; "
            + (f"the last good checkpoint, {last}, is kept" if last else "no checkpoint was saved before")
            + ". Try a lower --learning_rate"
        )
    state.crc32c = {name: crc32c(np.ascontiguousarray(a).data) for name, a in tensors.items()}
    try:
        os.makedirs(directory, exist_ok=True)
        remove_stale_temporaries(directory)
        listed = read_state_file_all(state_file)
        others = [p for p in listed if p != prefix]
        if len(others) < len(listed):
            # The prefix is saved again (a resumed run re-evaluated the step it resumed at, or a plateau
            # went back to best_dev's step): its two files are not replaced in one rename, so the state
            # file stops naming it until both are written.
            if others:
                write_state_file(state_file, others[-1], others)
            else:
                os.remove(state_file)
        write_safetensors(prefix + ".safetensors", tensors)
        write_file_atomically(prefix + ".json", json.dumps(state.to_json(), indent=2))
        kept = others + [prefix]
        kept, removed = kept[-max(max_to_keep, 1) :], kept[: -max(max_to_keep, 1)]
        write_state_file(state_file, prefix, kept)
    except (OSError, SafetensorError) as e:
        last = None
        with contextlib.suppress(CheckpointError, OSError):  # (the directory of a failing disk: say what is sure)
            last = newest_checkpoint(directory, intact=True) or find_checkpoint(directory, "train", intact=True)
        raise CheckpointError(
            f"cannot write checkpoint {prefix} ({_reason(e)}); "
            + (f"the last good one, {last}, is unchanged" if last else "no earlier checkpoint")
        ) from None
    for old in removed:
        for ext in (".safetensors", ".json", ".index", ".data-00000-of-00001", ".meta"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(old + ext)
    return prefix


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray]) -> None:
    """A .safetensors file, written atomically. Serialised here and written by us: safetensors' own
    save_file writes through a temporary file of its own (`.tmpXXXXXX`), which a killed run would leave
    behind, unnamed and uncleared, beside the checkpoints."""
    payload = safetensors.numpy.save(dict(tensors))
    write_file_atomically(path, payload)


def _reason(e: Exception) -> str:
    """An OSError's own words ("No space left on device"); safetensors wraps them in its message."""
    if isinstance(e, OSError):
        return str(e.strerror or e)
    text = str(e)
    return "No space left on device" if "No space left" in text or "os error 28" in text else text.splitlines()[0]


def update_run_state(prefix: str, state: RunState) -> None:
    """Rewrite a saved checkpoint's run state (atomically; the tensors are not rewritten)."""
    try:
        write_file_atomically(prefix + ".json", json.dumps(state.to_json(), indent=2))
    except OSError as e:
        raise CheckpointError(
            f"cannot update {prefix}.json ({e.strerror or e}); the checkpoint itself is intact"
        ) from None
