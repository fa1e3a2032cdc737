"""What the flags name, opened and checked for a tool: the alphabet (in Coqui's order of places to look),
a trained model, the scorer, the data sets, and Coqui's test phase over them."""

from __future__ import annotations

import os

from ..checkpoints.from_export import ExportedModel, open_exported
from ..checkpoints.load import LoadedModel, load_model, require_directory
from ..checkpoints.store import source_export_file
from ..data.samples import Sample, load_data_set, read_source
from ..decoding.beam_search import make_decoder
from ..decoding.evaluation import SampleResult, run_test
from ..decoding.scorer import Scorer, load_scorer
from ..model.alphabet import AnyAlphabet, UTF8Alphabet, alphabet_from_transcripts, load_alphabet
from ..system import log
from ..system.distributed import World
from ..system.errors import ConfigError
from .config import Config
from .options import decode_options, evaluation_settings, feature_settings, loader_settings


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
