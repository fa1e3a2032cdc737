"""Run Coqui's native client (the `stt` 1.4.0 package, in its own Python 3.10 environment) on a model and
WAV files, recording what it transcribes and the per-frame probabilities its streaming feeds its decoder.

    python run_client.py MODEL OUT.npz [--scorer SCORER] WAV...

OUT.npz holds, per WAV i, `probs_i` [frames, classes] and `seconds_i` (the whole transcription, and the
part of it spent in the decoder), and the transcripts as JSON.

The client exposes transcripts only. Its probabilities are read where they are used: on entry to the
decoder's DecoderState::next(probs, frames, classes), which its streaming calls once per batch of
n_steps frames. That entry is patched, for this process only, to jump to a recorder that copies the
batch and then runs the original function. Python 3.10 and numpy only: this runs beside our package,
not inside it.
"""

import argparse
import ctypes
import json
import os
import struct
import sys
import time
import wave

import numpy as np
import stt

NEXT = "_ZN12DecoderState4nextEPKdii"  # DecoderState::next(double const*, int, int)
Signature = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_double), ctypes.c_int, ctypes.c_int)


class DecoderInputRecorder:
    def __init__(self) -> None:
        library = os.path.join(os.path.dirname(stt.__file__), "lib", "libstt.so")
        libstt = ctypes.CDLL(library)  # the handle the `stt` module already loaded
        self.address = ctypes.cast(libstt[NEXT], ctypes.c_void_p).value
        self.original = Signature(self.address)
        self.batches: list[np.ndarray] = []
        self.decoder_seconds = 0.0  # time inside the decoder, to tell it apart from the acoustic model's
        self.callback = Signature(self.record)  # kept alive as long as the patch
        callback_address = ctypes.cast(self.callback, ctypes.c_void_p).value
        # movabs rax, callback; jmp rax (rax carries no argument in the System V calling convention)
        self.jump = b"\x48\xb8" + struct.pack("<Q", callback_address) + b"\xff\xe0"
        self.saved = ctypes.string_at(self.address, len(self.jump))
        libc = ctypes.CDLL(None)
        page = self.address & ~0xFFF
        if libc.mprotect(ctypes.c_void_p(page), 0x2000, 7) != 0:  # read, write, execute
            raise OSError(ctypes.get_errno(), "mprotect failed: cannot patch libstt")
        ctypes.memmove(self.address, self.jump, len(self.jump))

    def record(self, this, probs, frames, classes) -> None:
        self.batches.append(np.ctypeslib.as_array(probs, shape=(frames * classes,)).reshape(frames, classes).copy())
        ctypes.memmove(self.address, self.saved, len(self.saved))
        started = time.perf_counter()
        try:
            self.original(this, probs, frames, classes)
        finally:
            self.decoder_seconds += time.perf_counter() - started
            ctypes.memmove(self.address, self.jump, len(self.jump))

    def take(self) -> np.ndarray:
        batches, self.batches = self.batches, []
        return np.concatenate(batches) if batches else np.zeros((0, 0))


def read_wav(path: str) -> np.ndarray:
    with wave.open(path) as f:
        return np.frombuffer(f.readframes(f.getnframes()), np.int16)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("wavs", nargs="+")
    parser.add_argument("--scorer", default="")
    args = parser.parse_args()
    model = stt.Model(args.model)
    if args.scorer:
        model.enableExternalScorer(args.scorer)
    recorder = DecoderInputRecorder()
    arrays, transcripts = {}, []
    for i, path in enumerate(args.wavs):
        audio = read_wav(path)
        recorder.decoder_seconds = 0.0
        started = time.perf_counter()
        transcripts.append(model.stt(audio))
        arrays[f"seconds_{i}"] = np.array([time.perf_counter() - started, recorder.decoder_seconds])
        arrays[f"probs_{i}"] = recorder.take()
    arrays["transcripts"] = np.array(json.dumps(transcripts))
    arrays["sample_rate"] = np.array(model.sampleRate())
    arrays["beam_width"] = np.array(model.beamWidth())
    np.savez(args.out, **arrays)
    print(json.dumps(transcripts), file=sys.stderr)


if __name__ == "__main__":
    main()
