"""--auto_input_dataset: one CSV split into train, dev and test sets (and an alphabet), as Coqui does it.

The dev and test sets each get the sample size that estimates a proportion to a 1 % margin at 99 %
confidence for the remaining training set (Coqui's formula); at least one sample each. The split is
written as train.csv, dev.csv and test.csv beside the input, and an alphabet.txt of the transcripts'
characters unless --alphabet_config_path names one or one is there already. Files already there are
used, never overwritten. Unlike Coqui's, the shuffle is seeded by --random_seed: the same input gives
the same split on every run.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from ..model.alphabet import alphabet_from_transcripts, load_alphabet
from ..system import log
from ..system.atomic_files import write_file_atomically, write_text_once
from ..system.errors import ConfigError
from .samples import Sample, csv_text, read_source

SUBSETS = ("train", "dev", "test")


@dataclass
class AutoInput:
    train: str
    dev: str
    test: str
    alphabet: str


def dev_test_size(population: int) -> int:
    """The size of each of the dev and test sets: Cochran's sample size (z 2.58, p 0.5, margin 1 %) with the
    finite-population correction for the largest training set that leaves room for both."""
    z, p, margin = 2.58, 0.5, 0.01
    infinite = z**2 * p * (1 - p) / margin**2
    size = 0
    for train_size in range(population, 0, -1):
        size = int(infinite / (1 + infinite / train_size))
        if 2 * size + train_size <= population:
            break
    return size


def split(samples: list[Sample], seed: int) -> tuple[list[Sample], list[Sample], list[Sample]]:
    size = dev_test_size(len(samples))
    if size == 0:
        size = 1  # the formula gives 0 below 3 samples; Coqui then keeps one each
    shuffled = list(samples)
    random.Random(seed).shuffle(shuffled)
    train_end = len(shuffled) - 2 * size
    return shuffled[:train_end], shuffled[train_end : train_end + size], shuffled[train_end + size :]


def create_datasets(source: str, alphabet_path: str, seed: int) -> AutoInput:
    """The train/dev/test CSVs and the alphabet for --auto_input_dataset `source` (a CSV, or a folder
    holding one CSV besides any train/dev/test.csv)."""
    source_csv, folder = _input_csv(source)
    paths = {name: os.path.join(folder, f"{name}.csv") for name in SUBSETS}
    present = [name for name, path in paths.items() if os.path.exists(path)]
    if present and len(present) < 3:
        raise ConfigError(
            f"--auto_input_dataset {source}: {', '.join(paths[n] for n in present)} exist but not all of "
            f"{', '.join(paths.values())}: either all three are there (and used) or none (and they are made)"
        )
    samples = read_source(source_csv) if source_csv else [s for p in paths.values() for s in read_source(p)]
    if source_csv:
        log.info(f"Processing --auto_input_dataset input: {source_csv}")
        if len(samples) < 3:
            raise ConfigError(
                f"--auto_input_dataset {source_csv}: {len(samples)} sample(s), too few to split into train, dev "
                "and test sets (at least 3)"
            )
    alphabet = _alphabet(samples, alphabet_path, folder, source_csv)
    if present:
        log.info(f"Using the train, dev and test sets found beside --auto_input_dataset in {folder}")
    else:
        for name, subset in zip(SUBSETS, split(samples, seed)):
            log.info(f"Writing the {name} set ({len(subset)} samples) to {paths[name]}")
            write_file_atomically(paths[name], csv_text((s.wav_filename, s.filesize, s.transcript) for s in subset))
    return AutoInput(paths["train"], paths["dev"], paths["test"], alphabet)


def _input_csv(source: str) -> tuple[str, str]:
    """(the CSV to split, or "" when a folder holds only its three sets; the folder)."""
    if os.path.isdir(source):
        candidates = sorted(name for name in os.listdir(source) if name.endswith(".csv") and name[:-4] not in SUBSETS)
        if len(candidates) > 1:
            raise ConfigError(
                f"--auto_input_dataset {source}: a folder with several CSV files ({', '.join(candidates)}); "
                "name the one to split"
            )
        if not candidates and not all(os.path.exists(os.path.join(source, f"{n}.csv")) for n in SUBSETS):
            raise ConfigError(f"--auto_input_dataset {source}: a folder without a CSV file to split")
        return (os.path.join(source, candidates[0]) if candidates else ""), source
    if not os.path.isfile(source):
        raise ConfigError(f"--auto_input_dataset {source}: no such file or folder")
    return source, os.path.dirname(source) or "."


def _alphabet(samples: list[Sample], given: str, folder: str, source_csv: str) -> str:
    """The alphabet file to train with: the one given, the one beside the data, or one made from the data."""
    characters = alphabet_from_transcripts(s.transcript for s in samples)
    beside = os.path.join(folder, "alphabet.txt")
    if given or os.path.exists(beside):
        path, what = (given, "--alphabet_config_path") if given else (beside, "the alphabet.txt beside the data")
        missing = load_alphabet(path).missing_characters("".join(characters.labels))
        if missing:
            raise ConfigError(
                f"--auto_input_dataset {source_csv or folder}: {what} ({path}) lacks characters of the "
                f"transcripts: {missing}. Add them, or leave it out so that one is made from the data"
            )
        log.info(f"Using the alphabet {path}")
        return path
    log.info(f"Writing an alphabet of the transcripts' {characters.size} characters to {beside}")
    write_text_once(beside, characters.serialize_text())
    return beside
