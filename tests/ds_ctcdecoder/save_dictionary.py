"""Runs in the DeepSpeech 0.7.4 decoder's Python 3.8 environment (see __init__.py), not the project's: builds
each job's vocabulary FST with ds_ctcdecoder's Scorer.fill_dictionary and appends it with save_dictionary, as
DeepSpeech's generate_package.py did after copying the language model.

argv[1] is a JSON list of jobs: {"words_hex": the words' bytes in hex, "alphabet": an alphabet.txt path or
null for the UTF-8 alphabet, "utf8": bool, "alpha", "beta", "prefix_len": bytes standing in for the KenLM
model before the block, "out": the file to write}.
"""

from __future__ import annotations

import json
import struct
import sys

from ds_ctcdecoder import swigwrapper


def utf8_alphabet() -> swigwrapper.Alphabet:
    # DeepSpeech's serialised alphabet: uint16 count, then per label uint16 index, uint16 length, bytes;
    # the UTF-8 alphabet's label n is the byte n + 1
    labels = [bytes([i + 1]) for i in range(255)]
    blob = struct.pack("<H", len(labels)) + b"".join(struct.pack("<HH", i, 1) + b for i, b in enumerate(labels))
    alphabet = swigwrapper.Alphabet()
    if alphabet.deserialize(blob, len(blob)) != 0:
        raise SystemExit("the UTF-8 alphabet did not deserialise")
    return alphabet


def run(job: dict) -> None:
    if job["alphabet"] is None:
        alphabet = utf8_alphabet()
    else:
        alphabet = swigwrapper.Alphabet()
        if alphabet.init(job["alphabet"].encode()) != 0:  # init, which sets the space label as Coqui's does
            raise SystemExit("cannot read " + job["alphabet"])
    scorer = swigwrapper.Scorer()
    scorer.set_alphabet(alphabet)
    scorer.set_utf8_mode(bool(job["utf8"]))
    scorer.reset_params(job["alpha"], job["beta"])
    words = swigwrapper.StringVector()
    for word in job["words_hex"]:
        words.append(bytes.fromhex(word))
    scorer.fill_dictionary(words)
    with open(job["out"], "wb") as f:
        f.write(b"\xa5" * job["prefix_len"])
    if not scorer.save_dictionary(job["out"].encode(), True):
        raise SystemExit("save_dictionary failed for " + job["out"])


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        for job in json.load(f):
            run(job)
