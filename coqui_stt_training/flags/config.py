"""Every command-line flag of Coqui STT 1.4, in one dataclass, parsed the way Coqui parses it.

Field order follows Coqui's flags.txt so that the JSON we write reads like theirs; flags of our own
follow Coqui's 96. `Config.from_args()` parses argv; `finalize()` applies Coqui's derived rules
(checkpoint directories, dropout fall-backs, contradictions) without touching any file, and
`adopt_source_flags()` takes what Coqui takes from the source checkpoint's flags.txt. The sets at the
end say which tool uses which flag: its --help lists those, and Coqui's other flags are accepted
silently, as Coqui accepts them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..system import log
from ..system.errors import ConfigError, UnsupportedFlagError
from ..system.intervals import range_problem
from .model_card_defaults import CONTACT, DESCRIPTION, LANGUAGE, LICENSE, MAX_VERSION, MIN_VERSION


def _flag(default, help: str, **extra):
    if isinstance(default, list):
        return field(default=None, metadata={"help": help, "list": True, **extra})
    return field(default=default, metadata={"help": help, **extra})


NO_EFFECT = "Accepted for compatibility; has no effect in this PyTorch implementation."


@dataclass
class Config:
    # data
    train_files: list[str] | None = _flag([], "training CSV files (space-separated)")
    dev_files: list[str] | None = _flag([], "validation CSV files; their losses are combined into one dev loss")
    test_files: list[str] | None = _flag([], "test CSV files, each reported separately")
    metrics_files: list[str] | None = _flag(
        [],
        "extra CSV files reported after validation each epoch (loss, greedy "
        "WER and CER); they do not affect best-dev selection",
    )
    auto_input_dataset: str = _flag("", "one CSV to split into train/dev/test CSVs beside it (and an alphabet)")
    vocab_file: str = _flag("", "flashlight vocabulary (not supported: refused)")
    read_buffer: int = _flag(
        1 << 20, "read buffer size, with K/M/G/T suffix. " + NO_EFFECT, size=True, valid="[1, inf)"
    )
    feature_cache: str = _flag(
        "",
        "directory where each sample's features are kept after their first use, for "
        "later epochs and runs (empty: computed each time)",
    )
    cache_for_epochs: int = _flag(
        0, "start a fresh generation of the feature cache every N epochs (0: never)", valid="[0, inf)"
    )
    shuffle_batches: bool = _flag(False, "shuffle the order of batches each epoch")
    shuffle_start: int = _flag(1, "first (0-based) epoch in which batches are shuffled", valid="[0, inf)")
    shuffle_buffer: int = _flag(1000, "batch shuffle buffer size, in batches", valid="[1, inf)")
    # features
    feature_win_len: int = _flag(32, "feature extraction window length in milliseconds", valid="[1, 1000]")
    feature_win_step: int = _flag(20, "feature extraction window step in milliseconds", valid="[1, 1000]")
    audio_sample_rate: int = _flag(
        16000, "sample rate the model expects; audio is resampled to it", valid="[1000, 384000]"
    )
    normalize_sample_rate: bool = _flag(True, "resample training audio to --audio_sample_rate")
    augment: list[str] | None = _flag([], 'training augmentations, e.g. "tempo[p=0.5,factor=1~0.1]" (README)')
    # optimisation
    epochs: int = _flag(75, "number of epochs to train in this run", valid="[0, inf)")
    dropout_rate: float = _flag(0.05, "dropout of layer 1, and default for layers 2, 3 and 6", valid="[0, 1)")
    dropout_rate2: float = _flag(-1.0, "dropout of layer 2 (negative: --dropout_rate)", valid="(-inf, 1)")
    dropout_rate3: float = _flag(-1.0, "dropout of layer 3 (negative: --dropout_rate)", valid="(-inf, 1)")
    dropout_rate4: float = _flag(0.0, "unused by the model, as in Coqui", valid="[0, 1)")
    dropout_rate5: float = _flag(0.0, "unused by the model, as in Coqui", valid="[0, 1)")
    dropout_rate6: float = _flag(
        -1.0, "dropout applied to layer 5's output, as in Coqui (negative: --dropout_rate)", valid="(-inf, 1)"
    )
    relu_clip: float = _flag(20.0, "ReLU clipping value", valid="(0, inf)")
    beta1: float = _flag(0.9, "Adam beta1", valid="[0, 1)")
    beta2: float = _flag(0.999, "Adam beta2", valid="[0, 1)")
    epsilon: float = _flag(1e-8, "Adam epsilon (added to the uncorrected root, as TensorFlow does)", valid="(0, inf)")
    learning_rate: float = _flag(
        0.001, "initial learning rate; a loaded checkpoint's stored rate wins", valid="(0, inf)"
    )
    train_batch_size: int = _flag(1, "training batch size", valid="[1, inf)")
    dev_batch_size: int = _flag(1, "validation batch size", valid="[1, inf)")
    test_batch_size: int = _flag(1, "test batch size", valid="[1, inf)")
    export_batch_size: int = _flag(
        1, "batch size of the exported model; the ONNX export takes any batch size", valid="[1, inf)"
    )
    skip_batch_test: bool = _flag(False, "skip the initial forward/backward pass on the largest batch")
    inter_op_parallelism_threads: int = _flag(0, "torch inter-op threads (0: torch's default)", valid="[0, inf)")
    intra_op_parallelism_threads: int = _flag(0, "torch intra-op threads (0: torch's default)", valid="[0, inf)")
    use_allow_growth: bool = _flag(False, NO_EFFECT)
    load_cudnn: bool = _flag(False, "load a CuDNN-trained checkpoint. Not needed: any checkpoint loads on CPU or GPU")
    train_cudnn: bool = _flag(False, "train with the cuDNN LSTM. Not needed to load CuDNN checkpoints")
    automatic_mixed_precision: bool = _flag(
        False,
        "mixed precision training: autocast to bfloat16 on CPUs with bfloat16 units (float32 on others), "
        "float16 with loss scaling on CUDA; weights and checkpoints stay float32",
    )
    limit_test: int = _flag(0, "maximum number of samples per test file (0: all)", valid="[0, inf)")
    reverse_test: bool = _flag(False, "reverse the order of test samples")
    # checkpoints
    checkpoint_dir: str = _flag("", "load from and save to this directory (overrides the two below)")
    load_checkpoint_dir: str = _flag("", "directory to load the checkpoint from")
    save_checkpoint_dir: str = _flag("", "directory to save checkpoints to")
    checkpoint_secs: int = _flag(
        600, "save a train checkpoint every N seconds within an epoch (0: off)", valid="[0, inf)"
    )
    max_to_keep: int = _flag(5, "number of train checkpoints to keep", valid="[1, inf)")
    load_train: str = _flag(
        "auto",
        "checkpoint to train from: auto (best, then last, then init), best, last, init",
        choices=("auto", "best", "last", "init"),
    )
    load_evaluate: str = _flag(
        "auto", "checkpoint to evaluate: auto (best, then last), best, last", choices=("auto", "best", "last")
    )
    drop_source_layers: int = _flag(
        0, "transfer learning: re-initialise the last N layers of the loaded model", valid="[0, inf)"
    )
    # export
    export_dir: str = _flag("", "export directory: the model and its model card are written there")
    remove_export: bool = _flag(False, "delete the export directory first")
    export_tflite: bool = _flag(True, "export a .tflite for Coqui's native client; false: ONNX instead of a .pb")
    export_quantize: bool = _flag(True, "int8 weights in the TFLite export (false: float32)")
    export_savedmodel: bool = _flag(False, "a TensorFlow SavedModel (needs TensorFlow: refused)")
    n_steps: int = _flag(16, "time steps per call of the exported model", valid="[1, inf)")
    export_zip: bool = _flag(False, "zip the export directory, with the scorer, into <export_dir>.zip")
    export_file_name: str = _flag("output_graph", "export base file name")
    export_beam_width: int = _flag(
        500, "beam width of exported models; also the width evaluation uses", valid="[1, inf)"
    )
    export_author_id: str = _flag("author", "model card: author")
    export_model_name: str = _flag("model", "model card: model name")
    export_model_version: str = _flag("0.0.1", "model card: model version")
    export_contact_info: str = _flag(CONTACT, "model card: contact information")
    export_license: str = _flag(LICENSE, "model card: licence")
    export_language: str = _flag(LANGUAGE, "model card: language")
    export_min_stt_version: str = _flag(MIN_VERSION, "model card: minimum STT version")
    export_max_stt_version: str = _flag(MAX_VERSION, "model card: maximum STT version")
    export_description: str = _flag(DESCRIPTION, "model card: description")
    # reporting
    log_level: int = _flag(1, "0 DEBUG, 1 INFO, 2 WARN, 3 ERROR", valid="[0, 3]")
    show_progressbar: bool = _flag(True, "show progress bars; false prints Coqui's log lines instead")
    log_placement: bool = _flag(False, NO_EFFECT)
    report_count: int = _flag(5, "number of best, median and worst samples in the test report", valid="[0, inf)")
    summary_dir: str = _flag("", "TensorBoard directory (default: <save_checkpoint_dir>/summaries)")
    test_output_file: str = _flag("", "write every test sample's result to this JSON file")
    # geometry
    n_hidden: int = _flag(2048, "width of the hidden layers and the LSTM", valid="[1, inf)")
    layer_norm: bool = _flag(False, "layer normalisation after layers 1, 2, 3 and 5")
    random_seed: int = _flag(4568, "random seed", valid="[0, 4294967295]")
    # early stopping and plateau
    early_stop: bool = _flag(False, "stop when the dev loss has not improved for --es_epochs epochs")
    es_epochs: int = _flag(25, "early-stopping patience in epochs", valid="[1, inf)")
    es_min_delta: float = _flag(0.05, "minimum dev-loss improvement for early stopping and plateaus", valid="[0, inf)")
    reduce_lr_on_plateau: bool = _flag(False, "reduce the learning rate when the dev loss plateaus")
    plateau_epochs: int = _flag(10, "plateau patience in epochs", valid="[1, inf)")
    plateau_reduction: float = _flag(0.1, "learning-rate multiplier on a plateau", valid="(0, 1]")
    force_initialize_learning_rate: bool = _flag(False, "ignore the checkpoint's learning rate; use --learning_rate")
    # alphabet and decoding
    bytes_output_mode: bool = _flag(False, "predict UTF-8 bytes instead of alphabet characters")
    alphabet_config_path: str = _flag("", "alphabet file")
    scorer_path: str = _flag("", "Coqui scorer package (KenLM + vocabulary) for beam search; empty: no language model")
    beam_width: int = _flag(1024, "beam width for transcription", valid="[1, inf)")
    lm_alpha: float = _flag(0.931289039105002, "language model weight", valid="[0, inf)")
    lm_beta: float = _flag(1.1834137581510284, "word insertion bonus", valid="(-inf, inf)")
    cutoff_prob: float = _flag(1.0, "cumulative probability cut-off for beam search", valid="(0, 1]")
    cutoff_top_n: int = _flag(300, "top-N cut-off for beam search", valid="[1, inf)")
    one_shot_infer: str | None = _flag(None, "transcribe this one audio file with the checkpoint")
    lm_alpha_max: int = _flag(5, "lm_optimize: maximum alpha", valid="(0, inf)")
    lm_beta_max: int = _flag(5, "lm_optimize: maximum beta", valid="(0, inf)")
    n_trials: int = _flag(2400, "lm_optimize: number of trials", valid="[1, inf)")
    # beyond Coqui: after its 96 flags, so flags.txt starts as Coqui's does
    keep_shared_symbols: bool = _flag(
        False,
        "with --drop_source_layers: keep the output-layer weights of the "
        "symbols the source and target alphabets share (and the blank)",
    )
    freeze_source_layers: int = _flag(
        0,
        "with --drop_source_layers: do not train the layers loaded from the source "
        "checkpoint for the first N epochs (-1: the whole run)",
        valid="[-1, inf)",
    )
    source_layers_lr_scale: float = _flag(
        1.0,
        "with --drop_source_layers: learning-rate multiplier for the layers loaded from the source checkpoint",
        valid="[0, inf)",
    )
    rehearsal_files: list[str] | None = _flag(
        [],
        "source-domain data (CSV, SDB or shard) rehearsed while fine-tuning, so the model keeps what it knew: "
        "each epoch draws --rehearsal_fraction of its samples from them afresh",
    )
    rehearsal_fraction: float = _flag(
        0.0, "share of each epoch's training samples drawn from --rehearsal_files (the rest: --train_files)",
        valid="[0, 1)",
    )  # fmt: skip
    rehearsal_augment: bool = _flag(
        False, "apply --augment to the rehearsal samples too (default: only to --train_files)"
    )
    skip_invalid_samples: bool = _flag(
        False,
        "leave out the rows of --train/dev/test/metrics/rehearsal_files that fail "
        "validation (missing or unreadable audio, transcript not in the alphabet or "
        "too long for its audio), with a count, instead of stopping",
    )
    max_batch_memory: int = _flag(
        0,
        "memory one training step may need (K/M/G/T suffix), estimated for every training batch from its "
        "lengths before training: a longer utterance or a larger batch is refused by name (0, the default: 80% "
        "of what this process may use when the run starts: the GPU's free memory, else the machine's or its "
        "cgroup's available memory)",
        size=True,
        valid="[0, inf)",
    )
    data_workers: int = _flag(
        1,
        "processes that read audio and compute features while the model trains (0: in the training process itself)",
        valid="[0, inf)",
    )
    hot_words: str = _flag(
        "", "with a scorer: word:boost,word:boost, boosts added to the scores of words (Coqui's client's)"
    )
    # transcribe's own flags (Coqui's TranscribeConfig)
    src: str = _flag("", "transcribe: an audio file or a directory of them")
    dst: str = _flag("", "transcribe: where to write the .tlog of a single --src file (default: beside it)")
    recursive: bool = _flag(False, "transcribe: scan the --src directory recursively")
    force: bool = _flag(False, "transcribe: overwrite existing .tlog files")
    vad_aggressiveness: int = _flag(3, "transcribe: how readily quiet audio counts as silence (0 to 3)", valid="[0, 3]")
    batch_size: int = _flag(40, "transcribe: segments per batch", valid="[1, inf)")
    outlier_duration_ms: int = _flag(10000, "transcribe: segments longer than this are batched apart", valid="[1, inf)")
    outlier_batch_size: int = _flag(1, "transcribe: batch size of those long segments", valid="[1, inf)")
    checkpoint_format: str = _flag(
        "safetensors",
        "convert: format to write, ours (safetensors + JSON) or tf (TensorFlow V2, as Coqui STT writes)",
        choices=("safetensors", "tf"),
    )
    export_onnx: bool = _flag(False, "export: also write <export_file_name>.onnx for onnxruntime")

    # ---- parsing ---------------------------------------------------------------------------

    @classmethod
    def parser(cls, prog: str | None = None, uses: frozenset[str] | None = None) -> argparse.ArgumentParser:
        """The flags of a tool that uses `uses` (None: all of them, shown). Coqui's flags are accepted by
        every tool, as in Coqui, but --help shows only those the tool uses; flags of ours that the tool
        does not use are not accepted."""
        parser = _OneLineErrorParser(
            prog=prog,
            allow_abbrev=True,
            epilog=None
            if uses is None
            else "Coqui STT's other flags are accepted too, as Coqui accepts them; they do not affect this tool.",
        )
        for i, f in enumerate(dataclasses.fields(cls)):
            used = uses is None or f.name in uses
            if not used and i >= COQUI_FLAG_COUNT:
                continue
            text = f.metadata["help"] + (f"; valid: {f.metadata['valid']}" if "valid" in f.metadata else "")
            kwargs: dict[str, Any] = {
                "dest": f.name,
                "help": text.replace("%", "%%") if used else argparse.SUPPRESS,
                "default": f.default,
            }
            if f.metadata.get("list"):
                kwargs.update(nargs="*", metavar="FILE" if f.name.endswith("files") else "VALUE")
            elif f.type in ("bool", bool):
                # Coqui wants `--flag true|false`; the seed docs also write a bare `--flag`.
                kwargs.update(type=parse_bool, nargs="?", const=True, metavar="true/false")
            elif f.metadata.get("size"):
                kwargs.update(type=parse_size)
            elif f.name == "one_shot_infer":
                kwargs.update(type=str)
            else:
                kwargs.update(type={"int": int, "float": float, "str": str}[str(f.type)])
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            parser.add_argument(f"--{f.name}", **kwargs)
        return parser

    @classmethod
    def from_args(
        cls, argv: list[str] | None = None, prog: str | None = None, uses: frozenset[str] | None = None
    ) -> Config:
        return cls(**vars(cls.parser(prog, uses).parse_args(argv)))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    # ---- derived values ----------------------------------------------------------------------

    def finalize(self) -> Config:
        """Apply Coqui's rules that turn the flags into the values the run uses; raise ConfigError.
        Reads no file and changes nothing outside this object."""
        self.check_ranges()
        if self.checkpoint_dir:
            self.load_checkpoint_dir = self.save_checkpoint_dir = self.checkpoint_dir
        for name in ("dropout_rate2", "dropout_rate3", "dropout_rate6"):
            if getattr(self, name) < 0:
                setattr(self, name, self.dropout_rate)
        if self.train_cudnn and self.load_cudnn:
            raise ConfigError(
                "Trying to use --train_cudnn, but --load_cudnn was also specified. The --load_cudnn flag is only "
                "needed when converting a CuDNN RNN checkpoint to a CPU-capable graph."
            )
        if self.bytes_output_mode and self.alphabet_config_path:
            raise ConfigError("You cannot set --alphabet_config_path *and* --bytes_output_mode")
        for name in ("feature_win_len", "feature_win_step"):
            if getattr(self, name) * self.audio_sample_rate % 1000:
                raise ConfigError(
                    f"--{name} value ({getattr(self, name)}) in milliseconds ({getattr(self, name)}) "
                    f"multiplied by --audio_sample_rate value ({self.audio_sample_rate}) must be an "
                    "integer value. Adjust your --feature_win_len value or resample your audio accordingly."
                )
        transfer_options = [
            f"--{name}"
            for name, unset in (
                ("keep_shared_symbols", False),
                ("freeze_source_layers", 0),
                ("source_layers_lr_scale", 1.0),
            )
            if getattr(self, name) != unset
        ]
        if transfer_options and not self.drop_source_layers:
            raise ConfigError(
                f"{', '.join(transfer_options)} only apply to transfer learning: add --drop_source_layers"
            )
        if bool(self.rehearsal_files) != (self.rehearsal_fraction > 0):
            raise ConfigError(
                "--rehearsal_files and --rehearsal_fraction go together (e.g. --rehearsal_files source.csv "
                "--rehearsal_fraction 0.2): only one was given"
            )
        if not self.summary_dir and self.save_checkpoint_dir:
            self.summary_dir = os.path.join(self.save_checkpoint_dir, "summaries")
        return self

    def check_ranges(self) -> None:
        """Every numeric flag against the range its definition states (shown in --help), before anything
        is read or written: a negative learning rate would train by gradient ascent, a zero window would
        give garbage features, and neither says so."""
        for f in dataclasses.fields(self):
            problem = range_problem(getattr(self, f.name), f.metadata.get("valid"))
            if problem:
                raise ConfigError(f"--{f.name} {getattr(self, f.name)}: {problem}")

    def adopt_source_flags(
        self, source_flags: dict[str, Any] | None, features: bool = False, given: frozenset[str] | None = None
    ) -> Config:
        """n_hidden from the source checkpoint's flags.txt, as Coqui does; and, beyond Coqui, its bytes output
        mode when no alphabet is given (a bytes model leaves no alphabet.txt to find). With `features` (the
        flags an exported model's metadata gives), its sample rate and feature window too: features of
        another rate or window would make its weights meaningless. Coqui's warning is for an --n_hidden the user
        gave (`given`: the flags set; None: any may have been)."""
        if not source_flags:
            return self
        for name in ("audio_sample_rate", "feature_win_len", "feature_win_step") if features else ():
            value = source_flags.get(name)
            if isinstance(value, int) and value != getattr(self, name):
                log.warn(f"--{name} {getattr(self, name)} differs from the exported model's {value}; using {value}")
                setattr(self, name, value)
        source_n_hidden = source_flags.get("n_hidden")
        differs = isinstance(source_n_hidden, int) and source_n_hidden != self.n_hidden
        if isinstance(source_n_hidden, int) and differs and given is not None and "n_hidden" not in given:
            self.n_hidden = source_n_hidden
        elif isinstance(source_n_hidden, int) and differs:
            log.warn(
                f"WARNING: --n_hidden value ({self.n_hidden}) is different from value found in checkpoint "
                f"({source_n_hidden})."
            )
            log.warn(
                "WARNING: This would result in an error when loading the checkpoint, so n_hidden has been "
                "overriden with the checkpoint value."
            )
            self.n_hidden = source_n_hidden
        if (
            source_flags.get("bytes_output_mode") is True
            and not self.bytes_output_mode
            and not self.alphabet_config_path
            and not self.drop_source_layers
        ):
            log.info("The checkpoint was trained with --bytes_output_mode: using UTF-8 bytes output")
            self.bytes_output_mode = True
        return self

    def refuse_unsupported(self) -> None:
        """Flags set to something this implementation cannot do yet: better refused than silently ignored."""
        refused = [f"--{name}" for name in ("vocab_file", "export_savedmodel") if getattr(self, name)]
        if refused:
            raise UnsupportedFlagError(f"{', '.join(refused)}: not supported yet by this implementation")


COQUI_FLAG_COUNT = 96  # Config's first fields are Coqui 1.4's flags, in flags.txt order; ours follow


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse prints the whole 96-flag usage before an error; one line is what a user can read."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_bool(text: str) -> bool:
    if text in ("true", "false"):
        return text == "true"
    raise argparse.ArgumentTypeError(f"invalid parse_bool value: {text!r} (use true or false)")


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)B?", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size: {text!r} (e.g. 1MB, 512K)")
    return int(match[1]) * 1024 ** "_KMGT".index(match[2] or "_")


# ---- which tool uses which flag --------------------------------------------------------------------


def _names(text: str) -> frozenset[str]:
    names = frozenset(text.split())
    unknown = names - {f.name for f in dataclasses.fields(Config)}
    assert not unknown, unknown  # a typo here would hide a flag from --help
    return names


PROCESS_FLAGS = _names("log_level inter_op_parallelism_threads intra_op_parallelism_threads")
FEATURE_FLAGS = _names("audio_sample_rate feature_win_len feature_win_step")
# what every tool that loads a trained model reads: where it is, its alphabet, how its input is made
MODEL_FLAGS = (
    PROCESS_FLAGS
    | FEATURE_FLAGS
    | _names("checkpoint_dir load_checkpoint_dir load_evaluate alphabet_config_path bytes_output_mode relu_clip")
)
SCORER_FLAGS = _names("scorer_path lm_alpha lm_beta cutoff_prob cutoff_top_n hot_words")
TEST_SET_FLAGS = _names("test_files test_batch_size export_beam_width skip_invalid_samples feature_cache data_workers")
TEST_FLAGS = TEST_SET_FLAGS | _names("limit_test reverse_test report_count test_output_file")
EXPORT_FLAGS = _names(
    "export_dir remove_export export_tflite export_quantize export_savedmodel n_steps export_zip export_file_name "
    "export_beam_width export_batch_size export_author_id export_model_name export_model_version "
    "export_contact_info export_license export_language export_min_stt_version export_max_stt_version "
    "export_description export_onnx"
)
TRAIN_FLAGS = (
    MODEL_FLAGS
    | SCORER_FLAGS
    | TEST_FLAGS
    | EXPORT_FLAGS
    | _names(
        "train_files dev_files metrics_files auto_input_dataset vocab_file read_buffer feature_cache cache_for_epochs "
        "shuffle_batches shuffle_start shuffle_buffer normalize_sample_rate augment epochs dropout_rate "
        "dropout_rate2 dropout_rate3 dropout_rate4 dropout_rate5 dropout_rate6 beta1 beta2 epsilon learning_rate "
        "train_batch_size dev_batch_size skip_batch_test use_allow_growth load_cudnn train_cudnn "
        "automatic_mixed_precision save_checkpoint_dir checkpoint_secs max_to_keep load_train drop_source_layers "
        "show_progressbar log_placement summary_dir n_hidden layer_norm random_seed early_stop es_epochs "
        "es_min_delta reduce_lr_on_plateau plateau_epochs plateau_reduction force_initialize_learning_rate "
        "beam_width one_shot_infer keep_shared_symbols freeze_source_layers source_layers_lr_scale data_workers "
        "max_batch_memory rehearsal_files rehearsal_fraction rehearsal_augment"
    )
)
EVALUATE_FLAGS = MODEL_FLAGS | SCORER_FLAGS | TEST_FLAGS
EXPORT_TOOL_FLAGS = MODEL_FLAGS | EXPORT_FLAGS
TRANSCRIBE_FLAGS = (
    MODEL_FLAGS
    | SCORER_FLAGS
    | _names("beam_width src dst recursive force vad_aggressiveness batch_size outlier_duration_ms outlier_batch_size")
)
ONE_SHOT_FLAGS = MODEL_FLAGS | SCORER_FLAGS | _names("beam_width one_shot_infer")
LM_OPTIMIZE_FLAGS = (
    MODEL_FLAGS
    | SCORER_FLAGS
    | TEST_SET_FLAGS
    | _names("lm_alpha_max lm_beta_max n_trials random_seed show_progressbar")
)
COMBINE_FLAGS = MODEL_FLAGS | _names("test_batch_size data_workers feature_cache skip_invalid_samples")
CONVERT_FLAGS = PROCESS_FLAGS | _names("checkpoint_dir load_checkpoint_dir save_checkpoint_dir checkpoint_format")
