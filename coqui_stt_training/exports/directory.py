"""Export: what --export_dir receives, as Coqui STT 1.4's export wrote it (docs/compatibility.md, "Export").

`<export_file_name>.tflite` for Coqui's native client (int8 weights unless --export_quantize false;
to_tflite.py), `<export_file_name>.onnx` for onnxruntime with --export_onnx true, or instead of the
TFLite file with --export_tflite false (where Coqui wrote a TensorFlow graph; to_onnx.py), and
Coqui's model card. --export_zip packs the directory, with the scorer, into `<export_dir>.zip`.
Every target is checked before any work, and nothing already there is replaced unless --remove_export asks
for the directory to be replaced. An export is written whole or not at all: into a directory beside the
target (`.<name>.partial-<pid>`), moved into place once every file is complete, so that a stop signal, a
full disk or a crash leaves the previous export (or nothing) and the same command then works.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field

from ..model.alphabet import AnyAlphabet
from ..model.deepspeech import DeepSpeech
from ..model.features import FeatureSettings
from ..system import log
from ..system.atomic_files import (
    TMP_MARK,
    copy_atomically,
    remove_stale_temporaries,
    write_atomically,
    write_file_atomically,
)
from ..system.errors import ConfigError
from ..system.signals import deferred
from .to_onnx import onnx_bytes
from .to_tflite import tflite_bytes


@dataclass(frozen=True)
class ModelCard:
    """Coqui's model card (the --export_* fields of the same names), written beside the model."""

    author: str = "author"
    model_name: str = "model"
    model_version: str = "0.0.1"
    contact_info: str = ""
    license: str = ""
    language: str = ""
    min_stt_version: str = ""
    max_stt_version: str = ""
    description: str = ""

    def file_name(self) -> str:
        return f"{self.author}_{self.model_name}_{self.model_version}.md"

    def text(self, runtime: str) -> str:
        """Coqui's text exactly: YAML front matter with the values as given, then the description."""
        fields = [
            ("author", self.author),
            ("model_name", self.model_name),
            ("model_version", self.model_version),
            ("contact_info", self.contact_info),
            ("license", self.license),
            ("language", self.language),
            ("runtime", runtime),
            ("min_stt_version", self.min_stt_version),
            ("max_stt_version", self.max_stt_version),
            ("acoustic_model_url", "<replace this with a publicly available URL of the acoustic model>"),
            ("scorer_url", "<replace this with a publicly available URL of the scorer, if present>"),
        ]
        front = "".join(f"{key}: {value}\n" for key, value in fields)
        return f"---\n{front}---\n{self.description}\n"


@dataclass(frozen=True)
class ExportSettings:
    """Where and what to export (the --export_* flags)."""

    directory: str
    file_name: str = "output_graph"
    remove_existing: bool = False
    n_steps: int = 16
    beam_width: int = 500
    features: FeatureSettings = FeatureSettings()
    tflite: bool = True
    quantize: bool = True
    onnx: bool = False
    zip: bool = False
    scorer_path: str = ""  # copied into the zip
    card: ModelCard = ModelCard()

    @property
    def formats(self) -> list[str]:
        return (["tflite"] if self.tflite else []) + (["onnx"] if self.onnx or not self.tflite else [])


@dataclass(frozen=True)
class ExportTargets:
    models: dict[str, str]  # format -> path
    card: str
    archive: str | None = None
    copied: list[str] = field(default_factory=list)  # files copied in for the zip (the scorer)
    replacing: bool = False  # --remove_export over an existing directory: replaced once the new export is whole


def export_targets(settings: ExportSettings) -> ExportTargets:
    """The files an export will write, checked before any work (training included, when train exports)."""
    directory = settings.directory
    archive = os.path.abspath(directory.rstrip("/")) + ".zip" if settings.zip else None
    if archive and os.path.exists(archive):
        raise ConfigError(f"{archive} exists; --export_zip never replaces a file")
    replacing = settings.remove_existing and os.path.isdir(directory)
    if settings.zip and not replacing and os.path.isdir(directory) and os.listdir(directory):
        raise ConfigError(f"Directory {directory} is not empty, please fix this. (--export_zip packs all of it)")
    if settings.zip and settings.scorer_path and not os.path.isfile(settings.scorer_path):
        raise ConfigError(f"--scorer_path {settings.scorer_path}: no such file to put in the zip")
    try:  # where the export is put together, and where it goes: writable now, not after a training run
        for place in (_parent(directory), *([directory] if os.path.isdir(directory) else [])):
            os.makedirs(place, exist_ok=True)
            os.rmdir(tempfile.mkdtemp(prefix=_partial_prefix(directory), dir=place))
    except OSError as e:
        raise OSError(e.errno, e.strerror, directory) from None
    models = {kind: os.path.join(directory, f"{settings.file_name}.{kind}") for kind in settings.formats}
    card = os.path.join(directory, settings.card.file_name())
    copied = (
        [os.path.join(directory, os.path.basename(settings.scorer_path))] if archive and settings.scorer_path else []
    )
    for existing in (*models.values(), card, *copied) if not replacing else ():
        if os.path.exists(existing):
            raise ConfigError(
                f"{existing} exists; choose another --export_dir or --export_file_name, or pass "
                "--remove_export true to replace the directory's contents"
            )
    return ExportTargets(models, card, archive, copied, replacing)


def export(settings: ExportSettings, model: DeepSpeech, alphabet: AnyAlphabet, targets: ExportTargets) -> list[str]:
    """Write the models, the model card and the zip that `targets` (from export_targets) name, whole or not
    at all; returns the models' paths."""
    directory = settings.directory
    remove_stale_temporaries(_parent(directory))  # what exports killed outright (SIGKILL, a power cut) left
    partial = tempfile.mkdtemp(
        prefix=_partial_prefix(directory), suffix=f"{TMP_MARK}{os.getpid()}", dir=_parent(directory)
    )
    staged = lambda path: os.path.join(partial, os.path.basename(path))
    said, path = [], directory
    features, n_steps, beam_width, language = (
        settings.features,
        settings.n_steps,
        settings.beam_width,
        settings.card.language,
    )
    try:
        for kind, path in targets.models.items():
            if kind == "tflite":
                data = tflite_bytes(model, alphabet, features, n_steps, beam_width, language, settings.quantize)
                what = "int8 weights" if settings.quantize else "float32"
            else:
                data = onnx_bytes(model, alphabet, features, n_steps, beam_width, language, settings.quantize)
                what = "int8 weights, for onnxruntime" if settings.quantize else "float32, for onnxruntime"
            write_file_atomically(staged(path), data)
            said.append(f"Exported {path} ({what}, {len(data) / 2**20:.1f} MiB)")
        path = targets.card
        write_file_atomically(staged(path), settings.card.text("tflite" if settings.tflite else "onnx"))
        for path in targets.copied:
            copy_atomically(settings.scorer_path, staged(path))
        if targets.archive:
            path = targets.archive
            write_atomically(path, lambda tmp: _zip(partial, tmp))
        with deferred():  # the moves into place are not cut in the middle by a stop signal
            _move_into_place(partial, directory, targets.replacing)
    except OSError as e:  # (said of the file the user asked for, not of its place in the partial directory)
        raise OSError(e.errno, e.strerror, path) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # (gone already once moved into place)
    for line in said:
        log.info(line)
    log.info(
        f"Model metadata file saved to {targets.card}. Before submitting the exported model for publishing make "
        "sure all information in the metadata file is correct, and complete the URL fields."
    )
    if targets.archive:
        log.info(f"Exported packaged model {targets.archive}")
    return list(targets.models.values())


def _parent(directory: str) -> str:
    return os.path.dirname(os.path.abspath(directory.rstrip("/"))) or "/"


def _partial_prefix(directory: str) -> str:
    return f".{os.path.basename(os.path.abspath(directory.rstrip('/')))}.partial-"


def _move_into_place(partial: str, directory: str, replacing: bool) -> None:
    """The finished export becomes `directory`: by one rename where there is none (or, with --remove_export,
    where the old one is renamed away first and removed after), else file by file into the existing one."""
    if replacing and os.path.isdir(directory):
        log.info(f"Replacing the old export in {directory}")
        old = f"{partial}.old{TMP_MARK}{os.getpid()}"  # (a temporary too, should the process die here)
        os.rename(directory, old)
        os.rename(partial, directory)
        shutil.rmtree(old)
    elif not os.path.exists(directory):
        os.rename(partial, directory)
    else:
        for name in sorted(os.listdir(partial)):
            os.rename(os.path.join(partial, name), os.path.join(directory, name))


def _zip(directory: str, path: str) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(os.listdir(directory)):
            archive.write(os.path.join(directory, name), name)
