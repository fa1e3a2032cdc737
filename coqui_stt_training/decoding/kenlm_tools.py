"""A KenLM language model and its vocabulary built as Coqui's data/lm/generate_lm.py builds them, by KenLM's
own programs (lmplz, filter, build_binary) run as child processes.

The steps are Coqui's: the corpus (plain or .gz, UTF-8) lowercased line by line with Python's str.lower into
lower.txt.gz, its words (str.split) counted; the top_k most frequent (ties in order of first appearance)
are the vocabulary; lmplz estimates the ARPA model, filter keeps the n-grams of vocabulary words, and
build_binary -v writes lm.binary without the vocabulary strings, as a scorer package needs. The
intermediate files live under temporary names beside the outputs and are removed, as Coqui removes them;
lm.binary and vocab-<top_k>.txt appear only once the last step has succeeded, so a failed or stopped run
leaves what was there before. The programs are the ones scripts/build_kenlm.py builds from the kenlm
0.3.0 source distribution, or any KenLM build's.
"""

from __future__ import annotations

import codecs
import collections
import gzip
import io
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from ..system.atomic_files import TMP_MARK, require_writable, write_atomically, write_file_atomically
from ..system.errors import ConfigError, UserError

TOOLS = ("lmplz", "filter", "build_binary")
BINS_ENV = "COQUI_STT_KENLM_BIN"  # where scripts/build_kenlm.py puts them, if set
DEFAULT_BINS = os.path.join("~", ".cache", "coqui-stt-torch", "kenlm-0.3.0", "bin")  # and where otherwise
OUTPUT_TAIL = 8192  # bytes of a program's output kept to explain its failure


class LanguageModelError(UserError):
    pass


@dataclass(frozen=True)
class LmOptions:
    """Coqui's generate_lm.py flags."""

    input_txt: str
    output_dir: str
    top_k: int
    kenlm_bins: str  # "": the binaries scripts/build_kenlm.py cached
    arpa_order: int
    max_arpa_memory: str
    arpa_prune: str
    binary_a_bits: int
    binary_q_bits: int
    binary_type: str
    discount_fallback: bool


def kenlm_bins(flag: str) -> str:
    """The directory of lmplz, filter and build_binary: --kenlm_bins, else scripts/build_kenlm.py's cache."""
    cached = not flag
    directory = os.path.expanduser(flag or os.environ.get(BINS_ENV) or DEFAULT_BINS)
    for tool in TOOLS:
        path = os.path.join(directory, tool)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            where = (
                "no --kenlm_bins given, and scripts/build_kenlm.py has not built KenLM's programs: run "
                "python scripts/build_kenlm.py (from the repository), or give --kenlm_bins DIR"
                if cached
                else "give the directory of KenLM's lmplz, filter and build_binary (--kenlm_bins), or build "
                "them with python scripts/build_kenlm.py"
            )
            raise LanguageModelError(f"{path}: {tool} not found, or not executable: {where}")
    return directory


def _open_corpus(path: str) -> TextIO:
    # as Coqui: gzip by the name's extension alone, UTF-8 text, universal newlines
    if os.path.splitext(path)[1] == ".gz":
        return io.TextIOWrapper(io.BufferedReader(gzip.open(path)), encoding="utf-8")
    return open(path, encoding="utf-8")


def lowercase_and_count(input_txt: str, lower_path: str) -> collections.Counter[str]:
    """Coqui's first step: every line lowercased into `lower_path` (gzip), its words counted."""
    counter: collections.Counter[str] = collections.Counter()
    line_number = 0  # the lines read whole: a decoding error is in the next one
    try:
        with _open_corpus(input_txt) as lines, io.TextIOWrapper(gzip.open(lower_path, "wb"), encoding="utf-8") as out:
            for line in lines:
                lowered = line.lower()
                counter.update(lowered.split())
                out.write(lowered)
                line_number += 1
    except FileNotFoundError as e:
        if e.filename == input_txt:
            raise LanguageModelError(f"{input_txt}: corpus not found (--input_txt)") from None
        raise
    except UnicodeDecodeError:
        # text is decoded ahead of the lines handed out: the bad bytes are in this line or a later one
        raise LanguageModelError(
            f"{input_txt}: not UTF-8 text, at line {line_number + 1} or after (--input_txt)"
        ) from None
    except (gzip.BadGzipFile, EOFError) as e:
        raise LanguageModelError(f"{input_txt}: not a complete gzip file ({e}) (--input_txt)") from None
    except IsADirectoryError:
        raise LanguageModelError(f"{input_txt}: a directory, not a corpus (--input_txt)") from None
    if not counter:
        raise LanguageModelError(f"{input_txt}: the corpus holds no words (--input_txt)")
    return counter


def word_statistics(counter: collections.Counter[str], top: list[tuple[str, int]], top_k: int) -> list[str]:
    """Coqui's report on the vocabulary, line for line."""
    total = sum(counter.values())
    kept = sum(count for _, count in top)
    lines = [
        f"  Your text file has {total} words in total",
        f"  It has {len(counter)} unique words",
        f"  Your top-{top_k} words are {kept / total * 100:.4f} percent of all words",
        '  Your most common word "{}" occurred {} times'.format(*top[0]),
        f'  The least common word in your top-k is "{top[-1][0]}" with {top[-1][1]} times',
    ]
    last_count = top[-1][1]
    for i, (word, count) in enumerate(reversed(top)):
        if count > last_count:
            lines.append(f'  The first word with {count} occurrences is "{word}" at place {len(top) - 1 - i}')
            break
    return lines


def run_tool(command: list[str], stdin_path: str | None = None) -> None:
    """Run one of KenLM's programs, its output shown as it comes (its progress bars); a failure becomes one
    line with the program's last words. Stopped by a signal meanwhile, the program is stopped too."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    tail = b""
    with open(stdin_path or os.devnull, "rb") as stdin:
        child = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert child.stdout is not None
    try:
        while chunk := os.read(child.stdout.fileno(), 65536):
            sys.stderr.write(decoder.decode(chunk))
            sys.stderr.flush()
            tail = (tail + chunk)[-OUTPUT_TAIL:]
        status = child.wait()
    finally:
        if child.poll() is None:  # a stop signal, or an error of ours: the child goes with us
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        child.stdout.close()
    if status != 0:
        raise LanguageModelError(_failure(command, status, tail.decode("utf-8", "replace")))


def _failure(command: list[str], status: int, output: str) -> str:
    tool = os.path.basename(command[0])
    how = f"exit status {status}" if status > 0 else f"killed by signal {-status}"
    lines = [line.strip() for line in output.splitlines() if line.strip() and not line.strip().startswith("*")]
    last = lines[-1] if lines else "no output"
    if "BadDiscountException" in output:
        reason = next((line for line in lines if line.startswith("Could not calculate")), last)
        return (
            f"{tool} failed ({how}): {reason}: the corpus is too small for this --arpa_order; add "
            "--discount_fallback, or give more text"
        )
    return f"{tool} failed ({how}): {last} ({shlex.join(command)})"


def _temporary(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, f"{name}{TMP_MARK}{os.getpid()}")


@dataclass(frozen=True)
class LmFiles:
    binary: str
    vocabulary: str


def generate_lm(options: LmOptions, say: Callable[[str], object] = print) -> LmFiles:
    """Coqui's generate_lm: lm.binary and vocab-<top_k>.txt in --output_dir. `say` prints Coqui's lines."""
    if options.top_k < 1:
        raise ConfigError(f"--top_k {options.top_k}: keep at least one word")
    bins = kenlm_bins(options.kenlm_bins)
    if not os.path.exists(options.input_txt):
        raise LanguageModelError(f"{options.input_txt}: corpus not found (--input_txt)")
    require_writable(options.output_dir, f"--output_dir {options.output_dir}: cannot write there")
    lower = _temporary(options.output_dir, "lower.txt.gz")
    arpa = _temporary(options.output_dir, "lm.arpa")
    filtered = _temporary(options.output_dir, "lm_filtered.arpa")
    vocab_input = _temporary(options.output_dir, f"vocab-{options.top_k}.txt.filter")
    # lmplz's own temporary files (Coqui gives it --output_dir) go in a folder of their own, removed afterwards
    # even when lmplz is killed and cannot remove them itself
    lmplz_scratch = _temporary(options.output_dir, "lmplz")
    files = LmFiles(
        binary=os.path.join(options.output_dir, "lm.binary"),
        vocabulary=os.path.join(options.output_dir, f"vocab-{options.top_k}.txt"),
    )
    try:
        os.makedirs(lmplz_scratch)
        say("\nConverting to lowercase and counting word occurrences ...")
        counter = lowercase_and_count(options.input_txt, lower)
        say(f"\nSaving top {options.top_k} words ...")
        top = counter.most_common(options.top_k)
        vocabulary = "\n".join(word for word, _ in top)  # Coqui's file: no newline after the last word
        with open(vocab_input, "w", encoding="utf-8") as f:
            f.write(vocabulary)
        say("\nCalculating word statistics ...")
        for line in word_statistics(counter, top, options.top_k):
            say(line)
        say("\nCreating ARPA file ...")
        run_tool(_lmplz_command(options, bins, lower, arpa, lmplz_scratch))
        say("\nFiltering ARPA file using vocabulary of top-k words ...")
        run_tool([os.path.join(bins, "filter"), "single", f"model:{arpa}", filtered], stdin_path=vocab_input)
        say("\nBuilding lm.binary ...")
        build_binary = [os.path.join(bins, "build_binary"), "-a", str(options.binary_a_bits), "-q",
                        str(options.binary_q_bits), "-v", options.binary_type, filtered]  # fmt: skip

        def write_binary(tmp: str) -> None:
            run_tool([*build_binary, tmp])

        write_atomically(files.binary, write_binary)
        write_file_atomically(files.vocabulary, vocabulary)
    finally:
        for intermediate in (lower, arpa, filtered, vocab_input):
            if os.path.exists(intermediate):
                os.remove(intermediate)
        shutil.rmtree(lmplz_scratch, ignore_errors=True)
    return files


def _lmplz_command(options: LmOptions, bins: str, lower: str, arpa: str, scratch: str) -> list[str]:
    command = [os.path.join(bins, "lmplz"), "--order", str(options.arpa_order), "--temp_prefix", scratch + os.sep,
               "--memory", options.max_arpa_memory, "--text", lower, "--arpa", arpa,
               "--prune", *options.arpa_prune.split("|")]  # fmt: skip
    return command + (["--discount_fallback"] if options.discount_fallback else [])
