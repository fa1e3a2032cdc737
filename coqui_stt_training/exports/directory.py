"""Export: what --export_dir receives, as Coqui STT 1.4's export wrote it (docs/compatibility.md, "Export").

`<export_file_name>.tflite` for Coqui's native client (int8 weights unless --export_quantize false;
to_tflite.py), `<export_file_name>.onnx` for onnxruntime with --export_onnx true, or instead of the
TFLite file with --export_tflite false (where Coqui wrote a TensorFlow graph; to_onnx.py), and
Coqui's model card. --export_zip packs the directory, with the scorer, into `<export_dir>.zip`.
Every target is checked before any work, and nothing already there is replaced unless
--remove_export asks for the directory to be emptied first.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass, field

from ..model.alphabet import AnyAlphabet
from ..model.deepspeech import DeepSpeech
from ..model.features import FeatureSettings
from ..system import log
from ..system.atomic_files import copy_atomically, write_atomically, write_file_atomically
from ..system.errors import ConfigError
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


def export_targets(settings: ExportSettings) -> ExportTargets:
    """The files an export will write, checked before any work (training included, when train exports)."""
    directory = settings.directory
    archive = os.path.abspath(directory.rstrip("/")) + ".zip" if settings.zip else None
    if archive and os.path.exists(archive):
        raise ConfigError(f"{archive} exists; --export_zip never replaces a file")
    if settings.remove_existing and os.path.isdir(directory):
        log.info(f"Removing the old export in {directory}")
        shutil.rmtree(directory)
    if settings.zip and os.path.isdir(directory) and os.listdir(directory):
        raise ConfigError(f"Directory {directory} is not empty, please fix this. (--export_zip packs all of it)")
    if settings.zip and settings.scorer_path and not os.path.isfile(settings.scorer_path):
        raise ConfigError(f"--scorer_path {settings.scorer_path}: no such file to put in the zip")
    os.makedirs(directory, exist_ok=True)
    models = {kind: os.path.join(directory, f"{settings.file_name}.{kind}") for kind in settings.formats}
    card = os.path.join(directory, settings.card.file_name())
    copied = (
        [os.path.join(directory, os.path.basename(settings.scorer_path))] if archive and settings.scorer_path else []
    )
    for existing in (*models.values(), card, *copied):
        if os.path.exists(existing):
            raise ConfigError(
                f"{existing} exists; choose another --export_dir or --export_file_name, or pass "
                "--remove_export true to replace the directory's contents"
            )
    return ExportTargets(models, card, archive, copied)


def export(settings: ExportSettings, model: DeepSpeech, alphabet: AnyAlphabet, targets: ExportTargets) -> list[str]:
    """Write the models, the model card and the zip that `targets` (from export_targets) name; returns
    the models' paths."""
    features, n_steps, beam_width, language = (
        settings.features,
        settings.n_steps,
        settings.beam_width,
        settings.card.language,
    )
    for kind, path in targets.models.items():
        if kind == "tflite":
            data = tflite_bytes(model, alphabet, features, n_steps, beam_width, language, settings.quantize)
            what = "int8 weights" if settings.quantize else "float32"
        else:
            data = onnx_bytes(model, alphabet, features, n_steps, beam_width, language, settings.quantize)
            what = "int8 weights, for onnxruntime" if settings.quantize else "float32, for onnxruntime"
        write_file_atomically(path, data)
        log.info(f"Exported {path} ({what}, {len(data) / 2**20:.1f} MiB)")
    runtime = "tflite" if settings.tflite else "onnx"
    write_file_atomically(targets.card, settings.card.text(runtime))
    log.info(
        f"Model metadata file saved to {targets.card}. Before submitting the exported model for publishing make "
        "sure all information in the metadata file is correct, and complete the URL fields."
    )
    if targets.archive:
        for copy in targets.copied:
            copy_atomically(settings.scorer_path, copy)
        write_atomically(targets.archive, lambda tmp: _zip(settings.directory, tmp))
        log.info(f"Exported packaged model {targets.archive}")
    return list(targets.models.values())


def _zip(directory: str, path: str) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(os.listdir(directory)):
            archive.write(os.path.join(directory, name), name)
