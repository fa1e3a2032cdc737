"""Export, as Coqui STT 1.4's `python -m coqui_stt_training.export`: the model as Coqui's TFLite file
for its native client (or ONNX), and a model card (exports/directory.py).

    python -m coqui_stt_training.export --checkpoint_dir ckpt/ --export_dir model/
"""

from __future__ import annotations

from .exports.directory import export, export_targets
from .flags.cli import run_cli
from .flags.config import EXPORT_TOOL_FLAGS, Config
from .flags.options import export_settings
from .flags.services import model_for
from .system.errors import ConfigError
from .system.signals import phase


def export_job(config: Config) -> None:
    if not config.export_dir:
        raise ConfigError("Calling export script directly but no --export_dir specified")
    settings = export_settings(config)
    targets = export_targets(settings)
    loaded = model_for(config, config.load_checkpoint_dir)
    with phase("while exporting", f"{config.export_dir} is as it was. Run the same command again to export"):
        export(settings, loaded.model, loaded.alphabet, targets)


def main(argv: list[str] | None = None) -> None:
    run_cli(export_job, argv, "python -m coqui_stt_training.export", EXPORT_TOOL_FLAGS)


if __name__ == "__main__":
    main()
