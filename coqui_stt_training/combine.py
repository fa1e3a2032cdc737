"""One checkpoint from several, to keep what a source model knew (checkpoints/combine.py does the arithmetic):

    python -m coqui_stt_training.combine --checkpoint_dir runs/es --average_last 5 --output_dir runs/es-avg5
    python -m coqui_stt_training.combine --checkpoint_dir runs/es --average_best 5 --output_dir runs/es-best5
    python -m coqui_stt_training.combine --checkpoint_dir runs/es --interpolate_with runs/en \\
        --interpolate_weight 0.3 --output_dir runs/es-en0.3
    python -m coqui_stt_training.combine --checkpoint_dir runs/es --interpolate_with runs/en \\
        --interpolate_sweep 0 0.1 0.2 0.3 0.5 --report_files es/test.csv en/test.csv

--average_last N averages the run's N newest `train` checkpoints, --average_best N the N it keeps with the lowest
dev loss. --interpolate_with takes the fine-tuned model (--checkpoint_dir, in --load_evaluate order) that share
of the way back to its source model (a checkpoint directory or an exported model): weight 0 is the fine-tuned
model, 1 the source wherever the two share a weight (and, in the output layer, a symbol). The result is written
to --output_dir as `best_dev-<step>` with the run's alphabet.txt and flags.txt, so evaluate, export and transcribe
take it as any checkpoint. --report_files prints the greedy WER and CER of each result on those sets (of the
checkpoint itself when nothing is combined); --interpolate_sweep reports each weight without writing any, for a
user to pick the point that keeps enough of the source at an acceptable cost on the target.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from .checkpoints import store
from .checkpoints.combine import (
    InMemoryCheckpoint,
    average,
    best_checkpoints,
    interpolate,
    last_checkpoints,
    read_tensors,
    require_new_directory,
    write_combined,
)
from .checkpoints.layout import dimensions
from .checkpoints.load import check_alphabet, load_into, shared_output_columns, source_alphabet
from .decoding.beam_search import greedy_decode
from .decoding.evaluation import evaluate_samples, totals
from .flags.cli import given_flags, run_guarded
from .flags.config import COMBINE_FLAGS, Config
from .flags.options import loader_settings
from .flags.prepare import prepare
from .flags.services import data_set, resolve_alphabet
from .model.alphabet import AnyAlphabet, alphabet_record
from .model.deepspeech import DeepSpeech, ModelDimensions
from .system import log
from .system.atomic_files import write_text_once
from .system.errors import ConfigError

OWN_FLAGS = ("average_last", "average_best", "interpolate_with", "interpolate_weight", "interpolate_sweep",
             "output_dir", "report_files")  # fmt: skip


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = Config.parser("python -m coqui_stt_training.combine", COMBINE_FLAGS)
    own = parser.add_argument_group("combining")
    own.add_argument(
        "--average_last",
        type=int,
        default=0,
        metavar="N",
        help="average the run's N newest train checkpoints (it keeps --max_to_keep)",
    )
    own.add_argument(
        "--average_best",
        type=int,
        default=0,
        metavar="N",
        help="average the N kept train checkpoints of lowest dev loss",
    )
    own.add_argument(
        "--interpolate_with",
        default="",
        metavar="DIR",
        help="the source model (checkpoint directory or exported model)",
    )
    own.add_argument(
        "--interpolate_weight",
        type=float,
        metavar="W",
        help="the source's share: 0 is the fine-tuned model, 1 the source",
    )
    own.add_argument(
        "--interpolate_sweep",
        type=float,
        nargs="+",
        metavar="W",
        help="report these weights with --report_files; write none",
    )
    own.add_argument(
        "--output_dir",
        default="",
        metavar="DIR",
        help="where the combined checkpoint is written (a directory without checkpoints)",
    )
    own.add_argument("--report_files", nargs="+", default=[], metavar="FILE", help="sets to report greedy WER/CER on")
    values = vars(parser.parse_args(argv))
    options = argparse.Namespace(**{name: values.pop(name) for name in OWN_FLAGS})
    return Config(**values), options


def writes(options: argparse.Namespace) -> bool:
    """Whether the options ask for a checkpoint to be written (a sweep or a report alone writes none)."""
    return bool(options.average_last or options.average_best or options.interpolate_weight is not None)


def check(options: argparse.Namespace) -> None:
    """One way of combining, fully specified, before anything is read."""
    ways = [f"--{n}" for n in ("average_last", "average_best", "interpolate_with") if getattr(options, n)]
    if len(ways) > 1:
        raise ConfigError(f"{' and '.join(ways)}: choose one way of combining")
    for name in ("average_last", "average_best"):
        if getattr(options, name) < 0:
            raise ConfigError(f"--{name} {getattr(options, name)}: must be 1 or more")
    weights = ([options.interpolate_weight] if options.interpolate_weight is not None else []) + list(
        options.interpolate_sweep or []
    )
    if not options.interpolate_with and weights:
        raise ConfigError("--interpolate_weight and --interpolate_sweep need --interpolate_with (the source model)")
    if options.interpolate_with and (options.interpolate_weight is None) == (options.interpolate_sweep is None):
        raise ConfigError("--interpolate_with needs either --interpolate_weight (to write) or --interpolate_sweep")
    for weight in weights:
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"interpolation weight {weight}: must be in [0, 1]")
    if writes(options) and not options.output_dir:
        raise ConfigError("--output_dir is needed: where the combined checkpoint goes")
    if not ways and not options.report_files:
        raise ConfigError("nothing to do: give --average_last, --average_best or --interpolate_with, or --report_files")


def output_columns(fine_tuned: str, source: str, alphabet: AnyAlphabet, source_classes: int) -> list[int | None]:
    """For each output class of the fine-tuned model, the source's class of the same symbol."""
    found = source_alphabet(source)
    if found is not None and not isinstance(found[0], str) and not alphabet.is_bytes:
        return shared_output_columns(found[0], alphabet.labels)
    ours = alphabet_record(alphabet)
    if (found is not None and found[0] == ours) or (found is None and source_classes == alphabet.size + 1):
        if found is None:
            log.warn(f"Nothing says {source}'s alphabet; taking it to be {fine_tuned}'s (the same number of classes)")
        return list(range(alphabet.size + 1))
    raise ConfigError(f"{source} and {fine_tuned} were trained for different kinds of output (bytes and characters)")


def report(label: str, tensors: dict[str, np.ndarray], config: Config, alphabet: AnyAlphabet, sets) -> None:
    """Greedy WER and CER of a combination on each --report_files set."""
    reader = InMemoryCheckpoint(tensors)
    dims = dimensions(reader)
    assert dims is not None  # read_model checked
    model = DeepSpeech(ModelDimensions(dims.n_hidden, alphabet.size + 1, dims.layer_norm), config.relu_clip)
    load_into(label, model, reader=reader)
    decoder = lambda logits, lengths: greedy_decode(logits, lengths, alphabet)
    loader = loader_settings(config)
    for path, samples in sets:
        wer, cer, _ = totals(
            evaluate_samples(model, samples, decoder, torch.device("cpu"), config.test_batch_size, loader)
        )
        print(f"{label} on {path}: greedy WER {wer:.6f}, CER {cer:.6f}", flush=True)


def read_model(prefix: str, classes: int | None = None) -> dict[str, np.ndarray]:
    """A checkpoint's tensors; with `classes`, refused unless its output layer has that many (the alphabet's)."""
    tensors = read_tensors(prefix)
    dims = dimensions(InMemoryCheckpoint(tensors))
    if dims is None:
        raise store.CheckpointError(f"{prefix}: no layer_1/bias or layer_6/bias; it is not a DeepSpeech checkpoint")
    if classes is not None and dims.n_classes != classes:
        raise store.CheckpointError(
            f"{prefix}: its output layer has {dims.n_classes} classes, the alphabet {classes - 1} labels and the "
            "blank: give the checkpoint's own alphabet (--alphabet_config_path)"
        )
    return tensors


def combine_job(config: Config, options: argparse.Namespace) -> None:
    check(options)
    directory = config.load_checkpoint_dir
    if not directory:
        raise ConfigError("Missing checkpoint directory (--checkpoint_dir or --load_checkpoint_dir)")
    if writes(options):
        require_new_directory(options.output_dir)
    alphabet = resolve_alphabet(config)
    # the report sets are read and checked first: a bad row is found before minutes of reading checkpoints
    sets = [(path, data_set(config, [path], alphabet, "report")) for path in options.report_files]
    results: list[tuple[str, dict[str, np.ndarray]]] = []
    made_from: dict = {}
    if options.average_last or options.average_best:
        n = options.average_last or options.average_best
        prefixes = last_checkpoints(directory, n) if options.average_last else best_checkpoints(directory, n)
        log.info(f"Averaging {n} checkpoint(s): {', '.join(os.path.basename(p) for p in prefixes)}")
        made_from = {"average": prefixes}
        check_alphabet(prefixes[0], alphabet)
        results.append((f"Average of {n} checkpoints", average([read_model(p, alphabet.size + 1) for p in prefixes])))
        like = prefixes[0]
    else:
        found = store.search(directory, config.load_evaluate)
        found.log()
        if found.prefix is None:
            raise store.CheckpointError(f"no checkpoint in {directory} ({', '.join(found.tried)})")
        like = found.prefix
        check_alphabet(like, alphabet)
        fine_tuned = read_model(like, alphabet.size + 1)
        if not options.interpolate_with:
            results.append((f"Checkpoint {like}", fine_tuned))
        else:
            source_found = store.search(options.interpolate_with, "auto", exported=True)
            if source_found.prefix is None:
                raise store.CheckpointError(f"no checkpoint in {options.interpolate_with} (--interpolate_with)")
            source = read_model(source_found.prefix)
            ours, theirs = (dimensions(InMemoryCheckpoint(t)) for t in (fine_tuned, source))
            assert ours is not None and theirs is not None
            if ours.n_hidden != theirs.n_hidden:
                raise ConfigError(
                    f"{source_found.prefix} has n_hidden {theirs.n_hidden}, {like} {ours.n_hidden}: only models of "
                    "one shape interpolate"
                )
            columns = output_columns(like, source_found.prefix, alphabet, theirs.n_classes)
            weights = options.interpolate_sweep or [options.interpolate_weight]
            for weight in weights:
                results.append((f"Interpolation weight {weight:g}", interpolate(fine_tuned, source, weight, columns)))
            made_from = {"fine_tuned": like, "source": source_found.prefix, "weight": options.interpolate_weight}
    for label, tensors in results:
        if sets:
            report(label, tensors, config, alphabet, sets)
    if writes(options):
        written = write_combined(options.output_dir, results[0][1], like, made_from)
        for name in ("alphabet.txt", "flags.txt"):  # (the output directory held no checkpoint, but may hold these)
            if os.path.isfile(os.path.join(directory, name)):
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    write_text_once(os.path.join(options.output_dir, name), f.read())
        log.info(f"Wrote {written}")


def main(argv: list[str] | None = None) -> None:
    config, options = parse_args(argv)
    log.set_level(config.log_level)
    given = given_flags(argv, uses=COMBINE_FLAGS)
    run_guarded(lambda: combine_job(prepare(config, given), options), config.log_level)


if __name__ == "__main__":
    main()
