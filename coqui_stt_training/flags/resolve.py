"""From the flags to what a run uses: Coqui's derived values that depend on files (the source checkpoint's
flags.txt, where the alphabet is), the process's settings (threads), and the small option objects the
library takes instead of the whole Config. Every entry point goes through prepare() after parsing.
"""

from __future__ import annotations

import contextlib
import os

import torch

from ..checkpoints.flags_txt import read_flags_file
from ..checkpoints.from_export import ExportedModel, open_exported
from ..checkpoints.load import LoadedModel, load_model, require_directory
from ..checkpoints.store import source_export_file
from ..data.auto_input import create_datasets
from ..data.samples import Sample, load_data_set, read_source
from ..decoding.beam_search import DecodeOptions, make_decoder
from ..decoding.evaluation import EvaluationSettings, SampleResult, run_test
from ..decoding.scorer import Scorer, load_scorer
from ..decoding.transcription import Segmentation
from ..exports.directory import ExportSettings, ModelCard
from ..feeding.augment import parse_augmentations
from ..feeding.batches import LoaderSettings
from ..model.alphabet import AnyAlphabet, UTF8Alphabet, alphabet_from_transcripts, load_alphabet
from ..model.features import FeatureSettings
from ..system import log
from ..system.atomic_files import check_can_write_in
from ..system.distributed import World
from ..system.worker_pool import cpu_count
from .config import Config, ConfigError


def prepare(config: Config) -> Config:
    """Everything the command line derives from the flags before a tool runs: Coqui's rules, the source
    checkpoint's flags.txt, refusals, and the thread counts."""
    config.finalize()
    if config.auto_input_dataset:
        split_auto_input(config)
    exported = source_export(config)
    if exported:
        config.adopt_source_flags(exported.source_flags(), features=True)
    else:
        config.adopt_source_flags(read_flags_file(config.load_checkpoint_dir))
    config.refuse_unsupported()
    parse_augmentations(config.augment)  # a bad --augment line stops the run before anything is read
    check_outputs(config)
    if config.train_cudnn or config.load_cudnn:
        log.info(
            "--train_cudnn/--load_cudnn are not needed: any checkpoint loads on CPU or GPU, and the "
            "LSTM uses cuDNN whenever it runs on a CUDA device"
        )
    apply_threads(config)
    return config


def split_auto_input(config: Config) -> None:
    """--auto_input_dataset: the train, dev and test sets (and the alphabet) made from one CSV."""
    if config.train_files or config.dev_files or config.test_files:
        raise ConfigError(
            "When using --auto_input_dataset, do not specify --train_files, --dev_files, or --test_files."
        )
    made = create_datasets(config.auto_input_dataset, config.alphabet_config_path, config.random_seed)
    config.train_files, config.dev_files, config.test_files = [made.train], [made.dev], [made.test]
    if not config.bytes_output_mode:
        config.alphabet_config_path = made.alphabet


def check_outputs(config: Config) -> None:
    """Outputs that would otherwise fail at the end of a long run, or quietly cost speed: the feature cache
    and --test_output_file's folder must be writable now. (Checkpoint and export directories are checked
    by the tools that write them.)"""
    if config.feature_cache:
        if os.path.exists(config.feature_cache) and not os.path.isdir(config.feature_cache):
            raise ConfigError(f"--feature_cache {config.feature_cache}: a file, not a directory")
        try:
            check_can_write_in(config.feature_cache)
        except OSError as e:
            raise ConfigError(f"--feature_cache {config.feature_cache}: cannot write there ({e.strerror})") from None
    if config.test_output_file:
        if os.path.isdir(config.test_output_file):
            raise ConfigError(f"--test_output_file {config.test_output_file}: a directory, not a file")
        try:
            check_can_write_in(os.path.dirname(os.path.abspath(config.test_output_file)))
        except OSError as e:
            raise ConfigError(
                f"--test_output_file {config.test_output_file}: cannot write there ({e.strerror})"
            ) from None


def apply_threads(config: Config) -> None:
    """The flags' thread counts; by default no more intra-op threads than the CPUs this process may use
    (torch's own default counts the machine's cores, whatever a cgroup quota allows)."""
    if config.intra_op_parallelism_threads > 0:
        torch.set_num_threads(config.intra_op_parallelism_threads)
    elif cpu_count() < torch.get_num_threads():
        torch.set_num_threads(cpu_count())
    if config.inter_op_parallelism_threads > 0:
        with contextlib.suppress(RuntimeError):  # torch allows this only once per process, before parallel work
            torch.set_num_interop_threads(config.inter_op_parallelism_threads)


def source_export(config: Config) -> ExportedModel | None:
    """The exported model --load_checkpoint_dir names (a file, or a directory holding one and no
    checkpoint), if that is what it names."""
    path = source_export_file(config.load_checkpoint_dir)
    return open_exported(path) if path else None


def resolve_alphabet(config: Config) -> AnyAlphabet:
    """Coqui's order: bytes mode, the flag, the loaded checkpoint's (an exported model's own), the data
    folder's, generated from the data."""
    if config.bytes_output_mode:
        return UTF8Alphabet()
    if config.alphabet_config_path:
        return load_alphabet(config.alphabet_config_path)
    exported = source_export(config)
    if exported:
        log.info(f"Using the alphabet of the exported model {exported.path}")
        return exported.alphabet()
    if config.load_checkpoint_dir:
        path = os.path.join(config.load_checkpoint_dir, "alphabet.txt")
        if os.path.isfile(path):
            log.info(f"Using alphabet from checkpoint directory: {path}")
            return load_alphabet(path)
    sets = [config.train_files, config.dev_files, config.test_files]
    if all(sets):
        folders = {os.path.dirname(os.path.abspath(p)) for files in sets for p in files or []}
        if len(folders) == 1 and os.path.isfile(path := os.path.join(folders.pop(), "alphabet.txt")):
            log.info(f"Using alphabet found next to the data: {path}")
            return load_alphabet(path)
        log.info("Generating the alphabet from the transcripts of the train, dev and test sets")
        return alphabet_from_transcripts(s.transcript for files in sets for p in files or [] for s in read_source(p))
    if config.load_checkpoint_dir and not os.path.isdir(config.load_checkpoint_dir):
        raise ConfigError(
            f"Missing checkpoint directory {config.load_checkpoint_dir!r} (--checkpoint_dir or --load_checkpoint_dir)"
        )
    raise ConfigError(
        "Missing --alphabet_config_path flag. Couldn't find an alphabet file alongside checkpoint, "
        "and input datasets are not fully specified (--train_files, --dev_files, --test_files), so "
        "can't generate an alphabet."
    )


def model_for(config: Config, directory: str, world: World = World()) -> LoadedModel:
    """The trained model in `directory` (--load_evaluate order), for the alphabet the flags resolve to."""
    require_directory(directory)
    return load_model(directory, resolve_alphabet(config), config.load_evaluate, world.device(), config.relu_clip)


def scorer_for(config: Config, alphabet: AnyAlphabet) -> Scorer | None:
    return load_scorer(config.scorer_path, alphabet, config.lm_alpha, config.lm_beta)


def data_set(config: Config, paths: list[str], alphabet: AnyAlphabet, kind: str) -> list[Sample]:
    """One flag's data sets (--train_files, --dev_files, ...), read and checked."""
    features = feature_settings(config)
    return load_data_set(paths, alphabet, features, kind, config.skip_invalid_samples, config.normalize_sample_rate)


def test_phase(
    config: Config, loaded: LoadedModel, test_sets: list[tuple[str, list[Sample]]] | None = None, world: World = World()
) -> list[SampleResult]:
    """Coqui's test phase on --test_files (`test_sets`: those sets already read and checked), decoded with
    --export_beam_width and the scorer."""
    options = decode_options(config, config.export_beam_width)
    decoder = make_decoder(loaded.alphabet, options, scorer_for(config, loaded.alphabet))
    if test_sets is None:
        test_sets = [(path, data_set(config, [path], loaded.alphabet, "test")) for path in config.test_files or []]
    return run_test(
        loaded.model,
        test_sets,
        decoder,
        loaded.device,
        evaluation_settings(config),
        loader_settings(config),
        loaded.alphabet.is_bytes,
        world,
    )


# ---- option objects -------------------------------------------------------------------------------


def feature_settings(config: Config) -> FeatureSettings:
    return FeatureSettings(config.audio_sample_rate, config.feature_win_len, config.feature_win_step)


def decode_options(config: Config, beam_width: int) -> DecodeOptions:
    """Beam search with the --cutoff_* pruning; Coqui tests with --export_beam_width and transcribes with
    --beam_width."""
    return DecodeOptions(beam_width, config.cutoff_prob, config.cutoff_top_n)


def loader_settings(config: Config) -> LoaderSettings:
    return LoaderSettings(
        feature_settings(config),
        config.feature_cache,
        config.cache_for_epochs,
        config.data_workers,
        config.shuffle_batches,
        config.shuffle_start,
        config.random_seed,
        tuple(parse_augmentations(config.augment)),
        config.epochs,
    )


def evaluation_settings(config: Config) -> EvaluationSettings:
    return EvaluationSettings(
        config.test_batch_size, config.limit_test, config.reverse_test, config.report_count, config.test_output_file
    )


def export_settings(config: Config) -> ExportSettings:
    card = ModelCard(
        config.export_author_id,
        config.export_model_name,
        config.export_model_version,
        config.export_contact_info,
        config.export_license,
        config.export_language,
        config.export_min_stt_version,
        config.export_max_stt_version,
        config.export_description,
    )
    return ExportSettings(
        config.export_dir,
        config.export_file_name,
        config.remove_export,
        config.n_steps,
        config.export_beam_width,
        feature_settings(config),
        config.export_tflite,
        config.export_quantize,
        config.export_onnx,
        config.export_zip,
        config.scorer_path,
        card,
    )


def segmentation(config: Config) -> Segmentation:
    return Segmentation(
        config.vad_aggressiveness, config.batch_size, config.outlier_duration_ms, config.outlier_batch_size
    )
