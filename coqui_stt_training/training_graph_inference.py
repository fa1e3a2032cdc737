"""Coqui's one-file transcription from a checkpoint (spec §1):

python -m coqui_stt_training.training_graph_inference --checkpoint_dir ckpt/ --one_shot_infer speech.wav
"""

from __future__ import annotations

from .config import ConfigError
from .evaluate import one_shot_infer


def job(config) -> None:
    from .train import setup_evaluation

    if not config.one_shot_infer:
        raise ConfigError("Missing --one_shot_infer: the audio file to transcribe")
    model, alphabet, device = setup_evaluation(config, config.load_checkpoint_dir)
    one_shot_infer(config, model, alphabet, device)


def main(argv: list[str] | None = None) -> None:
    from .train import run_cli

    run_cli(job, argv, "python -m coqui_stt_training.training_graph_inference")


if __name__ == "__main__":
    main()
