"""A KenLM language model and its vocabulary for a scorer package, as Coqui's data/lm/generate_lm.py makes them
(decoding/kenlm_tools.py does the work):

    python -m coqui_stt_training.generate_lm --input_txt corpus.txt.gz --output_dir lm/ --top_k 500000 \\
        --arpa_order 5 --max_arpa_memory 85% --arpa_prune 0|0|1 --binary_a_bits 255 --binary_q_bits 8 \\
        --binary_type trie [--kenlm_bins DIR] [--discount_fallback]

writes lm/lm.binary and lm/vocab-500000.txt, the inputs of generate_scorer_package. Coqui's flags, with its
defaults, except that --kenlm_bins may be left out to use the programs scripts/build_kenlm.py built. Coqui's
ClearML flags are accepted and do nothing.
"""

from __future__ import annotations

import argparse

from .decoding.kenlm_tools import LmOptions, generate_lm
from .flags.cli import run_guarded
from .system import log
from .system.signals import phase


def parse_args(argv: list[str] | None) -> LmOptions:
    parser = argparse.ArgumentParser(
        prog="python -m coqui_stt_training.generate_lm",
        description="Generate lm.binary and top-k vocab for Coqui STT.",
    )
    parser.add_argument("--input_txt", required=True, help="Path to a file.txt or file.txt.gz with sample sentences")
    parser.add_argument("--output_dir", required=True, help="Directory path for the output")
    parser.add_argument(
        "--top_k", type=int, required=True,
        help="Use top_k most frequent words for the vocab.txt file. These will be used to filter the ARPA file.",
    )  # fmt: skip
    parser.add_argument(
        "--kenlm_bins", default="",
        help="File path to the KENLM binaries lmplz, filter and build_binary (default: the ones "
        "scripts/build_kenlm.py built, in $COQUI_STT_KENLM_BIN or ~/.cache/coqui-stt-torch/kenlm-0.3.0/bin)",
    )  # fmt: skip
    parser.add_argument("--arpa_order", type=int, required=True, help="Order of k-grams in ARPA-file generation")
    parser.add_argument(
        "--max_arpa_memory", required=True, help="Maximum allowed memory usage for ARPA-file generation (e.g. 85%%)"
    )
    parser.add_argument("--arpa_prune", required=True, help="ARPA pruning parameters. Separate values with '|'")
    parser.add_argument("--binary_a_bits", type=int, required=True, help="Build binary quantization value a in bits")
    parser.add_argument("--binary_q_bits", type=int, required=True, help="Build binary quantization value q in bits")
    parser.add_argument("--binary_type", required=True, help="Build binary data structure type (trie or probing)")
    parser.add_argument(
        "--discount_fallback", action="store_true",
        help="To try when such message is returned by kenlm: 'Could not calculate Kneser-Ney discounts [...] "
        "rerun with --discount_fallback'",
    )  # fmt: skip
    parser.add_argument("--clearml_project", default="STT/wav2vec2 decoding", help="Coqui's; ignored")
    parser.add_argument("--clearml_task", default="LM generation", help="Coqui's; ignored")
    args = vars(parser.parse_args(argv))
    del args["clearml_project"], args["clearml_task"]
    return LmOptions(**args)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)

    def job() -> None:
        with phase("while building the language model", f"{options.output_dir} holds what it held before"):
            files = generate_lm(options)
        log.info(f"Wrote {files.binary} and {files.vocabulary}")

    run_guarded(job, log.INFO)


if __name__ == "__main__":
    main()
