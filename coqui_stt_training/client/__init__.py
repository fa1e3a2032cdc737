"""Coqui's native client's Python API (the `stt` 1.4.0 package) on current Python, without TensorFlow or torch:
porting an app is changing its import to `from coqui_stt_training.client import Model`.

    model = Model("model.tflite")
    model.enableExternalScorer("kenlm.scorer")
    text = model.stt(audio)  # int16 samples at model.sampleRate()
    stream = model.createStream()
    stream.feedAudioContent(chunk)  # as the audio comes
    stream.intermediateDecode()
    metadata = stream.finishStreamWithMetadata(3)

The same names, arguments, results and errors as `stt` 1.4.0 (RuntimeError with Coqui's message and code). A
Coqui `.tflite` export (int8 or float32, Coqui's own or ours) runs in LiteRT, TensorFlow Lite's own runtime,
with the kernels libstt uses (model/tflite_runtime.py: the `client` extra); a `.pb` export in numpy
(model/numpy_runtime.py); the streaming is libstt's, buffer for buffer (decoding/streaming.py), and the beam
search Coqui's decoder's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..checkpoints.flags_txt import read_flags_file
from ..checkpoints.from_export import open_exported
from ..checkpoints.store import open_checkpoint, read_run_state, search
from ..decoding.beam_search import Candidate
from ..decoding.scorer import Scorer
from ..decoding.streaming import AcousticModel, ClientStream
from ..model.alphabet import AnyAlphabet, alphabet_from_record, load_alphabet
from ..model.features import FeatureSettings
from ..model.numpy_runtime import NumpyDeepSpeech
from ..model.onnx_runtime import OnnxDeepSpeech
from ..model.tflite_runtime import TfliteDeepSpeech
from ..system.errors import UserError

# Coqui's error codes and messages (native_client/coqui-stt.h)
ERRORS = {
    0x1000: "Missing model information.",
    0x2002: "Invalid scorer file.",
    0x2003: "Incompatible model.",
    0x2004: "External scorer is not enabled.",
    0x2005: "Could not read scorer file.",
    0x3005: "Error reading the proto buffer model file.",
    0x3008: "Could not insert hot-word.",
    0x3010: "Could not erase hot-word.",
}


def _fail(call: str, code: int, detail: str = "") -> RuntimeError:
    message = f"{call} failed with '{ERRORS[code]}' (0x{code:X})"
    return RuntimeError(f"{message}: {detail}" if detail else message)


def version() -> str:
    return "1.4.0"


@dataclass(frozen=True)
class TokenMetadata:
    text: str
    timestep: int
    start_time: float


@dataclass(frozen=True)
class CandidateTranscript:
    tokens: list[TokenMetadata]
    confidence: float


@dataclass(frozen=True)
class Metadata:
    transcripts: list[CandidateTranscript]


@dataclass(frozen=True)
class _Opened:
    network: AcousticModel
    alphabet: AnyAlphabet
    features: FeatureSettings
    beam_width: int


def _open(path: str) -> _Opened:
    """A model file or directory as the client runs it: a `.tflite` in LiteRT (libstt's own kernels, so an int8
    export's numbers are libstt's), an `.onnx` in onnxruntime, a `.pb` export or a checkpoint directory in numpy."""
    if os.path.isdir(path):
        return _open_checkpoint(path)
    if path.endswith(".onnx"):
        onnx = OnnxDeepSpeech(path, threads=1)
        return _Opened(onnx, onnx.alphabet, onnx.features, onnx.beam_width)
    exported = open_exported(path)
    network: AcousticModel = TfliteDeepSpeech(path) if path.endswith(".tflite") else NumpyDeepSpeech(exported.get)
    meta = exported.metadata
    return _Opened(network, meta.alphabet, FeatureSettings(meta.sample_rate, meta.win_len_ms, meta.win_step_ms),
                   meta.beam_width)  # fmt: skip


def _open_checkpoint(directory: str) -> _Opened:
    """A checkpoint directory: its best-dev checkpoint, else its latest (Coqui's evaluate order); the alphabet
    its run recorded, else its alphabet.txt; the rate, window and beam width of its flags.txt."""
    found = search(directory, "auto")
    if found.prefix is None:
        raise ValueError(f"{directory}: no checkpoint in it")
    state = read_run_state(found.prefix)
    alphabet_file = os.path.join(directory, "alphabet.txt")
    if state is not None and state.alphabet is not None:
        alphabet = alphabet_from_record(state.alphabet)
    elif os.path.isfile(alphabet_file):
        alphabet = load_alphabet(alphabet_file)
    else:
        raise ValueError(f"{directory}: no alphabet.txt and no alphabet recorded with its checkpoint")
    flags = read_flags_file(directory) or {}
    features = FeatureSettings(
        int(flags.get("audio_sample_rate", 16000)),
        int(flags.get("feature_win_len", 32)),
        int(flags.get("feature_win_step", 20)),
    )
    network = NumpyDeepSpeech(open_checkpoint(found.prefix).get)
    return _Opened(network, alphabet, features, int(flags.get("export_beam_width", 500)))


class Model:
    """A Coqui STT model: `model_path` is a Coqui `.tflite` or `.pb` export, our `.onnx` export, or a checkpoint
    directory."""

    def __init__(self, model_path: str):
        if not model_path:
            raise _fail("CreateModel", 0x1000)
        if not os.path.exists(model_path):
            raise _fail("CreateModel", 0x3005, f"{model_path}: no such file")
        try:
            opened = _open(model_path)
        except (UserError, ValueError, KeyError) as e:
            raise _fail("CreateModel", 0x3005, str(e)) from None
        except Exception as e:  # onnxruntime reports a foreign file in several ways
            if not model_path.endswith(".onnx"):
                raise
            raise _fail("CreateModel", 0x3005, f"{model_path}: {str(e).splitlines()[0]}") from None
        if opened.network.n_classes != opened.alphabet.size + 1:
            classes, labels = opened.network.n_classes, opened.alphabet.size
            raise _fail("CreateModel", 0x2003, f"{classes} output classes for an alphabet of {labels} labels")
        self._network, self._alphabet, self._features = opened.network, opened.alphabet, opened.features
        self._beam_width = opened.beam_width
        self._scorer: Scorer | None = None
        self._hot_words: dict[str, float] = {}

    def beamWidth(self) -> int:
        return self._beam_width

    def setBeamWidth(self, beam_width: int) -> int:
        self._beam_width = int(beam_width)
        return 0

    def sampleRate(self) -> int:
        return self._features.sample_rate

    def enableExternalScorer(self, scorer_path: str) -> None:
        if not os.path.isfile(scorer_path):
            raise _fail("EnableExternalScorer", 0x2005, f"{scorer_path}: no such file")
        try:
            self._scorer = Scorer(scorer_path, self._alphabet)
        except UserError as e:
            raise _fail("EnableExternalScorer", 0x2002, str(e)) from None

    def disableExternalScorer(self) -> int:
        if self._scorer is None:
            return 0x2004
        self._scorer = None
        return 0

    def setScorerAlphaBeta(self, alpha: float, beta: float) -> int:
        if self._scorer is None:
            return 0x2004
        self._scorer.set_weights(alpha, beta)
        return 0

    def addHotWord(self, word: str, boost: float) -> None:
        if self._scorer is None:
            raise _fail("AddHotWord", 0x2004)
        if word in self._hot_words:  # (an unordered_map's insert keeps the first boost)
            raise _fail("AddHotWord", 0x3008)
        self._hot_words[word] = float(np.float32(boost))

    def eraseHotWord(self, word: str) -> None:
        if self._scorer is None:
            raise _fail("EraseHotWord", 0x2004)
        if self._hot_words.pop(word, None) is None:
            raise _fail("EraseHotWord", 0x3010)

    def clearHotWords(self) -> None:
        if self._scorer is None:
            raise _fail("ClearHotWords", 0x2004)
        self._hot_words.clear()

    def stt(self, audio_buffer: np.ndarray) -> str:
        stream = self.createStream()
        stream.feedAudioContent(audio_buffer)
        return stream.finishStream()

    def sttWithMetadata(self, audio_buffer: np.ndarray, num_results: int = 1) -> Metadata:
        stream = self.createStream()
        stream.feedAudioContent(audio_buffer)
        return stream.finishStreamWithMetadata(num_results)

    def createStream(self) -> Stream:
        hot_words = tuple(self._hot_words.items()) if self._scorer is not None else ()
        return Stream(self, ClientStream(self._network, self._features, self._beam_width, self._scorer, hot_words))

    def _text(self, candidate: Candidate) -> str:
        return self._alphabet.decode(list(candidate.labels))

    def _metadata(self, candidates: list[Candidate]) -> Metadata:
        step = np.float32(self._features.stride / self._features.sample_rate)  # (float)audio_win_step_ / sample_rate_
        transcripts = []
        for candidate in candidates:
            tokens = [
                TokenMetadata(self._token_text(label), int(t), float(np.float32(t) * step))
                for label, t in zip(candidate.labels, candidate.timesteps)
            ]
            transcripts.append(CandidateTranscript(tokens, candidate.confidence))
        return Metadata(transcripts)

    def _token_text(self, label: int) -> str:
        if self._alphabet.is_bytes:  # one byte of UTF-8: a character only when it is one whole
            return bytes([label + 1]).decode("utf-8", errors="replace")
        return self._alphabet.labels[label]


class Stream:
    """A stream of one utterance: Model.createStream()."""

    def __init__(self, model: Model, stream: ClientStream):
        self._model = model
        self._impl: ClientStream | None = stream

    def _live(self, what: str) -> ClientStream:
        if self._impl is None:
            raise RuntimeError(f"Stream object is not valid. Trying to {what} an already finished stream?")
        return self._impl

    def feedAudioContent(self, audio_buffer: np.ndarray) -> None:
        buffer = np.asarray(audio_buffer)
        if buffer.dtype != np.int16:
            raise TypeError(f"audio must be int16 samples, not {buffer.dtype}")
        self._live("feed").feed(buffer.ravel())

    def intermediateDecode(self) -> str:
        return self._model._text(self._live("decode").decode(1)[0])

    def intermediateDecodeWithMetadata(self, num_results: int = 1) -> Metadata:
        return self._model._metadata(self._live("decode").decode(num_results))

    def intermediateDecodeFlushBuffers(self) -> str:
        """EXPERIMENTAL in libstt: the audio fed so far through the acoustic model first, partial batch included.
        (stt 1.4.0's own method raises AttributeError, a misspelt binding; this does what its C function does.)"""
        stream = self._live("decode")
        stream.flush()
        return self._model._text(stream.decode(1)[0])

    def intermediateDecodeWithMetadataFlushBuffers(self, num_results: int = 1) -> Metadata:
        stream = self._live("decode")
        stream.flush()
        return self._model._metadata(stream.decode(num_results))

    def finishStream(self) -> str:
        stream = self._live("finish")
        stream.finish()
        self._impl = None
        return self._model._text(stream.decode(1)[0])

    def finishStreamWithMetadata(self, num_results: int = 1) -> Metadata:
        stream = self._live("finish")
        stream.finish()
        self._impl = None
        return self._model._metadata(stream.decode(num_results))

    def freeStream(self) -> None:
        self._impl = None
