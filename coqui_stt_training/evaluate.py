"""Testing a trained model, as Coqui STT 1.4's `python -m coqui_stt_training.evaluate`.

    python -m coqui_stt_training.evaluate --checkpoint_dir ckpt/ --test_files test.csv

Each --test_files set is decoded with --export_beam_width beams (and --scorer_path's language model) and
reported as Coqui reports it: WER, CER and loss, then the best, median and worst samples; with
--test_output_file, every sample's result as JSON.
"""

from __future__ import annotations

from .flags.cli import run_cli
from .flags.config import EVALUATE_FLAGS, Config
from .flags.python_api import run_library_call
from .flags.services import model_for, test_phase
from .system.distributed import joined_world
from .system.errors import ConfigError


def evaluate_job(config: Config) -> None:
    if not config.test_files:
        raise ConfigError("You need to specify what files to use for evaluation via the --test_files flag.")
    with joined_world(config.log_level) as world:  # under torchrun each rank tests a share of the batches
        test_phase(config, model_for(config, config.load_checkpoint_dir, world), world=world)


def test() -> None:
    """Coqui's Python API: test the model of the process-wide configuration (util.config's
    initialize_globals_from_args) on its test_files, with the report the command line prints."""
    run_library_call(evaluate_job)


def main(argv: list[str] | None = None) -> None:
    run_cli(evaluate_job, argv, "python -m coqui_stt_training.evaluate", EVALUATE_FLAGS)


if __name__ == "__main__":
    main()
