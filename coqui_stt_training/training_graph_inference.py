"""Coqui's one-file transcription from a checkpoint:

python -m coqui_stt_training.training_graph_inference --checkpoint_dir ckpt/ --one_shot_infer speech.wav
"""

from __future__ import annotations

from .decoding.transcription import one_shot_infer
from .flags.cli import run_cli
from .flags.config import ONE_SHOT_FLAGS, Config
from .flags.options import decode_options, feature_settings
from .flags.services import model_for, scorer_for
from .system.errors import ConfigError


def one_shot_job(config: Config) -> None:
    if not config.one_shot_infer:
        raise ConfigError("Missing --one_shot_infer: the audio file to transcribe")
    loaded = model_for(config, config.load_checkpoint_dir)
    options = decode_options(config, config.beam_width)
    scorer = scorer_for(config, loaded.alphabet)
    print(one_shot_infer(config.one_shot_infer, loaded, feature_settings(config), options, scorer), flush=True)


def main(argv: list[str] | None = None) -> None:
    run_cli(one_shot_job, argv, "python -m coqui_stt_training.training_graph_inference", ONE_SHOT_FLAGS)


if __name__ == "__main__":
    main()
