"""A scorer package from a KenLM binary and its vocabulary, byte for byte as Coqui STT 1.4's
generate_scorer_package writes it (decoding/scorer_package.py and decoding/vocabulary_fst.py do the work):

    python -m coqui_stt_training.generate_scorer_package --checkpoint ckpt/ --lm lm/lm.binary \\
        --vocab lm/vocab-500000.txt --package kenlm.scorer --default_alpha 0.93 --default_beta 1.18

Coqui's flags: --checkpoint DIR (the model's alphabet.txt is read from it) or, as Coqui 1.0 and 1.1 and
DeepSpeech named it, --alphabet FILE; --force_bytes_output_mode true|false, which is otherwise guessed from the
vocabulary as Coqui guesses it (no word longer than one character: bytes output mode). Beyond Coqui, what
its decoder would refuse later is refused now, in one line: an ARPA file or a binary built without -v, a
vocabulary the alphabet cannot spell or that is not the language model's; and an existing --package is
never replaced.
"""

from __future__ import annotations

import argparse
import math
import os

from .decoding.scorer_package import (
    PackageError,
    check_language_model,
    check_vocabulary_matches,
    looks_char_based,
    read_vocabulary,
    trie_block,
    write_package,
)
from .decoding.vocabulary_fst import spell_vocabulary, vocabulary_fst
from .flags.cli import run_guarded
from .model.alphabet import AnyAlphabet, UTF8Alphabet, load_alphabet
from .system import log
from .system.atomic_files import require_writable
from .system.errors import ConfigError
from .system.signals import phase

# boost::program_options' words for a bool, which Coqui's flag is parsed with
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
EXAMPLES = 5


def _bool(text: str) -> bool:
    if text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _weight(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m coqui_stt_training.generate_scorer_package",
        description="Build a Coqui STT scorer package: a KenLM binary and its vocabulary FST.",
    )
    parser.add_argument(
        "--checkpoint", default=None,
        help="Path to a checkpoint directory corresponding to the model this scorer will be used with. The alphabet "
        "will be loaded from an alphabet.txt file in the checkpoint directory. Words with characters not in the "
        "alphabet will not be included in the vocabulary. Optional if using bytes output mode.",
    )  # fmt: skip
    parser.add_argument(
        "--alphabet", default=None,
        help="Path of alphabet file to use for vocabulary construction (Coqui 1.0-1.1's flag; or --checkpoint)",
    )  # fmt: skip
    parser.add_argument(
        "--lm", required=True,
        help="Path of KenLM binary LM file. Must be built without including the vocabulary (use the -v flag). "
        "See generate_lm for how to create a binary LM.",
    )  # fmt: skip
    parser.add_argument(
        "--vocab", required=True, help="Path of vocabulary file. Must contain words separated by whitespace."
    )
    parser.add_argument("--package", required=True, help="Path to save scorer package (never an existing file).")
    parser.add_argument(
        "--default_alpha", type=_weight, required=True, help="Default value of alpha hyperparameter (float)."
    )
    parser.add_argument(
        "--default_beta", type=_weight, required=True, help="Default value of beta hyperparameter (float)."
    )
    parser.add_argument(
        "--force_bytes_output_mode", type=_bool, default=None,
        help="Boolean flag, force set or unset bytes output mode in the scorer package. If not set, infers from the "
        "vocabulary.",
    )  # fmt: skip
    return parser.parse_args(argv)


def _alphabet(args: argparse.Namespace, bytes_mode: bool) -> tuple[AnyAlphabet, str]:
    """The alphabet the words are spelled in, and the file it came from ("" for the UTF-8 alphabet)."""
    if bytes_mode:
        if args.checkpoint or args.alphabet:
            log.info("Bytes output mode: the vocabulary is spelled in UTF-8 bytes, so the alphabet file is not read")
        return UTF8Alphabet(), ""
    if args.alphabet:
        return load_alphabet(args.alphabet), args.alphabet
    if not args.checkpoint:
        raise ConfigError(
            "No --checkpoint (or --alphabet) given: a package that is not for bytes output mode spells its words in "
            "the model's alphabet; give --checkpoint DIR (its alphabet.txt), or --force_bytes_output_mode true"
        )
    path = os.path.join(args.checkpoint, "alphabet.txt")
    if not os.path.isfile(path):
        raise ConfigError(
            f"{path}: no alphabet.txt in the --checkpoint directory: give the model's checkpoint directory, or its "
            "alphabet file with --alphabet FILE"
        )
    return load_alphabet(path), path


def create_package(args: argparse.Namespace) -> None:
    if args.checkpoint and args.alphabet:
        raise ConfigError("--checkpoint and --alphabet both name the alphabet: give one of them")
    if os.path.lexists(args.package):
        raise PackageError(f"{args.package}: already exists (--package): remove it, or choose another path")
    require_writable(os.path.dirname(args.package) or ".", f"--package {args.package}: cannot write there")
    lm = check_language_model(args.lm)

    words = read_vocabulary(args.vocab)
    char_based = looks_char_based(words)
    log.info(f"{len(words)} unique words read from vocabulary file.")  # Coqui's lines, word for word
    looks = "Looks" if char_based else "Doesn't look"
    log.info(f"{looks} like a character based (Bytes Are All You Need) model.")
    bytes_mode = args.force_bytes_output_mode
    if bytes_mode is None:
        bytes_mode = char_based
        log.info(
            "--force_bytes_output_mode was not specified, using value infered from vocabulary contents: "
            + str(bytes_mode).lower()
        )
    alphabet, alphabet_path = _alphabet(args, bytes_mode)
    if not alphabet.is_bytes and alphabet.space_index is None:
        log.warn(
            f"{alphabet_path}: the alphabet has no space, so Coqui ends every word with label -1, "
            "which no decoder reaches: the package is built as Coqui builds it, but will match no word"
        )

    spelled = spell_vocabulary(words, alphabet)
    if not spelled.spellings and not spelled.left_out:
        raise PackageError(f"{args.vocab}: holds only <s>, </s> and <unk>, which no package spells (--vocab)")
    if not spelled.spellings:
        raise PackageError(
            f"{args.vocab}: the alphabet {alphabet_path} can spell none of its words (e.g. "
            f"{', '.join(map(repr, spelled.examples))}): give the vocabulary of the model's language (--vocab), or "
            "the model's alphabet"
        )
    if spelled.left_out:
        log.warn(
            f"{args.vocab}: {len(spelled.left_out)} of {len(words)} words have characters outside the alphabet and are "
            f"left out, as Coqui leaves them out (e.g. {', '.join(map(repr, spelled.examples))})"
        )
    unknown = check_vocabulary_matches(args.lm, args.vocab, words - set(spelled.left_out))
    if unknown is None:
        log.warn("the kenlm package is not installed, so the vocabulary is not checked against the language model")
    elif unknown:
        examples = ", ".join(repr(w.decode("utf-8", "backslashreplace")) for w in unknown[:EXAMPLES])
        log.warn(
            f"{args.vocab}: {len(unknown)} words are not in the language model {args.lm}; the decoder can spell "
            f"them but scores each as out of vocabulary (e.g. {examples})"
        )

    tail = trie_block(
        vocabulary_fst(spelled.spellings), alphabet.is_bytes, args.default_alpha, args.default_beta,
        lm.end_of_search_offset,
    )  # fmt: skip
    if os.path.lexists(args.package):  # made while the vocabulary was built
        raise PackageError(f"{args.package}: already exists (--package): remove it, or choose another path")
    write_package(args.lm, lm.end_of_search_offset, tail, args.package)
    log.info(f"Package created in {args.package}.")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    # A failure exits 1 (Coqui's tool says what failed but exits 0, which scripts cannot check).
    def job() -> None:
        with phase("while building the package", "nothing was written"):
            create_package(args)

    run_guarded(job, log.INFO)


if __name__ == "__main__":
    main()
