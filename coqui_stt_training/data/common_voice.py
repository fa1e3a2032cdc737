"""A Mozilla Common Voice release folder as training CSVs, as Coqui's bin/import_cv2.py made them.

A release folder holds TSVs (train, dev, test, and validated and other, which hold more) and `clips/` of
MP3 files. Each TSV gives one CSV of the rows whose clip and transcript are usable, in the TSV's order; a
`train-all.csv` is also made from validated.tsv, without the dev and test sets' speakers and sentences, as
Coqui's importer did. Transcripts are cleaned as Coqui cleaned them (its English rule, or the user's own
`validate_label` function), optionally folded to ASCII (--normalize) and kept only when --filter_alphabet
encodes them. Clips are used where they are: libsndfile reads MP3, so nothing is converted unless
--audio_format wav asks for 16 kHz mono WAVs beside the MP3s (Coqui always converted, with sox).

Every skipped row is counted by reason, and listed in `import_cv-skipped.csv`. Outputs already there are
never overwritten without --force; a WAV already converted is reused.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import soundfile

from ..model.alphabet import Alphabet, alphabet_from_transcripts, load_alphabet
from ..system import log
from ..system.atomic_files import write_atomically, write_file_atomically
from ..system.errors import UserError
from ..system.worker_pool import ordered_map
from . import audio
from .samples import csv_text

SETS = ("train", "dev", "test", "validated", "other")
SKIPPED_LIST = "import_cv-skipped.csv"
MAX_LISTED_PER_REASON = 5


class CommonVoiceError(UserError):
    pass


@dataclass
class ImportOptions:
    cv_dir: str
    audio_dir: str = ""  # default: <cv_dir>/clips
    output_dir: str = ""  # default: the audio folder, where Coqui wrote its CSVs
    filter_alphabet: str = ""
    normalize: bool = False
    validate_label_locale: str = ""
    space_after_every_character: bool = False
    min_duration: float = 0.0
    max_duration: float = 10.0  # Coqui's MAX_SECS
    audio_format: str = "mp3"  # "wav": convert to --sample_rate mono WAV beside each clip
    sample_rate: int = 16000
    workers: int = 0  # 0: the CPUs this process may use
    force: bool = False


@dataclass
class Row:
    where: str  # "<tsv>, row <n>"
    clip: str  # the path of the clip, as found
    sentence: str
    client_id: str


@dataclass
class ClipInfo:
    audio: str  # the file the CSV names (the clip, or the WAV made from it)
    filesize: int
    duration: float
    problem: str = ""  # why the clip cannot be used: the kind ("unreadable audio") ...
    detail: str = ""  # ... and the decoder's words


@dataclass
class SetResult:
    name: str
    kept: list[tuple[Row, ClipInfo, str]]  # (row, its audio, its transcript)
    skipped: list[tuple[Row, str, str]]  # (row, reason, detail)


def import_common_voice(options: ImportOptions) -> list[SetResult]:
    """Write the CSVs (and an alphabet, unless --filter_alphabet gives one) for a Common Voice folder."""
    audio_dir = options.audio_dir or os.path.join(options.cv_dir, "clips")
    output_dir = options.output_dir or audio_dir
    present = [name for name in SETS if os.path.isfile(os.path.join(options.cv_dir, f"{name}.tsv"))]
    if not present:
        raise CommonVoiceError(f"{options.cv_dir}: no {', '.join(s + '.tsv' for s in SETS)}: not a Common Voice folder")
    names = present + (["train-all"] if "validated" in present else [])
    targets = [os.path.join(output_dir, f"{n}.csv") for n in names] + [os.path.join(output_dir, SKIPPED_LIST)]
    if not options.filter_alphabet:
        targets.append(os.path.join(output_dir, "alphabet.txt"))
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not options.force:
        raise CommonVoiceError(f"{existing[0]} exists: import_cv never overwrites its outputs without --force")
    clean = transcript_cleaner(options)
    tsv_rows = {name: read_tsv(os.path.join(options.cv_dir, f"{name}.tsv"), audio_dir) for name in present}
    clips = clip_infos([r.clip for rows in tsv_rows.values() for r in rows], options)
    results = [_import_set(name, rows, clips, clean, options) for name, rows in tsv_rows.items()]
    if "validated" in present:
        results.append(_train_all(results, options))
    os.makedirs(output_dir, exist_ok=True)
    for result in results:
        path = os.path.join(output_dir, f"{result.name}.csv")
        rows = [(os.path.relpath(clip.audio, output_dir), clip.filesize, t) for _, clip, t in result.kept]
        write_file_atomically(path, csv_text(rows))
        log.info(f"Wrote {path}: {len(result.kept)} samples, {_hours(result.kept)} of audio")
    skipped = [entry for result in results for entry in result.skipped]
    write_file_atomically(os.path.join(output_dir, SKIPPED_LIST), _skipped_text(skipped))
    if not options.filter_alphabet:
        alphabet = alphabet_from_transcripts(t for result in results for _, _, t in result.kept)
        write_file_atomically(os.path.join(output_dir, "alphabet.txt"), alphabet.serialize_text())
        log.info(f"Wrote {os.path.join(output_dir, 'alphabet.txt')}: the {alphabet.size} characters of the kept rows")
    return results


def read_tsv(path: str, audio_dir: str) -> list[Row]:
    """The rows of a Common Voice TSV (columns by name: `path` and `sentence`; `client_id` if present)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise CommonVoiceError(f"{path}: not valid UTF-8 (byte offset {e.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = reader.fieldnames or []
    for column in ("path", "sentence"):
        if column not in header:
            raise CommonVoiceError(f"{path}: missing TSV column '{column}' (header is: {' '.join(header) or 'empty'})")
    name = os.path.basename(path)
    return [
        Row(f"{name}, row {reader.line_num}", os.path.join(audio_dir, row["path"] or ""), row["sentence"] or "",
            row.get("client_id") or "")
        for row in reader
    ]  # fmt: skip


# ---- transcripts ------------------------------------------------------------------------------------


def validate_label_eng(label: str) -> str | None:
    """Coqui's English rule: no digits or ( < [ ] & * {; dashes and underscores are spaces; . , ; ? ! : "
    removed; lower case. None: not usable."""
    if re.search(r"[0-9]|[(<\[\]&*{]", label):
        return None
    label = re.sub(" {2,}", " ", label.replace("-", " ").replace("_", " "))
    label = re.sub(r'[.,;?!:"]', "", label).strip().lower()
    return label or None


def transcript_cleaner(options: ImportOptions) -> Callable[[str], tuple[str | None, str]]:
    """sentence -> (transcript, "") or (None, why it is not usable)."""
    validate = _locale_rule(options.validate_label_locale) if options.validate_label_locale else validate_label_eng
    alphabet: Alphabet | None = load_alphabet(options.filter_alphabet) if options.filter_alphabet else None

    def clean(sentence: str) -> tuple[str | None, str]:
        if options.normalize:
            sentence = unicodedata.normalize("NFKD", sentence.strip()).encode("ascii", "ignore").decode("ascii")
        label = validate(sentence)
        if not label:
            return None, "transcript rejected by the label rule"
        if options.space_after_every_character:
            label = " ".join(label)
        if alphabet is not None and alphabet.missing_characters(label):
            return None, "characters not in --filter_alphabet"
        return label, ""

    return clean


def _locale_rule(path: str) -> Callable[[str], str | None]:
    """The user's `validate_label(label)` from a Python file (Coqui's --validate_label_locale)."""
    spec = importlib.util.spec_from_file_location("validate_label_locale", path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        raise CommonVoiceError(f"--validate_label_locale {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rule = getattr(module, "validate_label", None)
    if not callable(rule):
        raise CommonVoiceError(f"--validate_label_locale {path}: defines no validate_label(label) function")
    return rule


# ---- clips --------------------------------------------------------------------------------------


def clip_infos(paths: Iterable[str], options: ImportOptions) -> dict[str, ClipInfo]:
    """Every distinct clip checked (and converted with --audio_format wav) once, in parallel."""
    work = [(p, options.audio_format, options.sample_rate) for p in dict.fromkeys(paths)]
    what = "Converting clips to WAV" if options.audio_format == "wav" else "Checking clips"
    return {item[0]: info for item, info in zip(work, ordered_map(clip_info, work, options.workers, what))}


def clip_info(item: tuple[str, str, int]) -> ClipInfo:
    """A clip's size and duration, or why it cannot be used; with "wav", the WAV made from it instead."""
    path, audio_format, rate = item
    try:
        info = audio.audio_info(path)
    except audio.AudioError as e:
        return ClipInfo(path, 0, 0.0, audio.problem_kind(e), str(e))
    if audio_format != "wav":
        return ClipInfo(path, os.path.getsize(path), info.frames / info.samplerate)
    wav = os.path.splitext(path)[0] + ".wav"
    if not os.path.exists(wav):
        try:
            samples = audio.load_audio(path, rate)
        except audio.AudioError as e:
            return ClipInfo(path, 0, 0.0, audio.problem_kind(e), str(e))
        pcm = audio.to_pcm16(samples)
        write_atomically(wav, lambda tmp: soundfile.write(tmp, pcm, rate, format="WAV", subtype="PCM_16"))
    converted = soundfile.info(wav)
    return ClipInfo(wav, os.path.getsize(wav), converted.frames / converted.samplerate)


# ---- sets ---------------------------------------------------------------------------------------


def _import_set(
    name: str, rows: list[Row], clips: dict[str, ClipInfo], clean: Callable, options: ImportOptions
) -> SetResult:
    result = SetResult(name, [], [])
    for row in rows:
        transcript, why = clean(row.sentence)
        clip = clips[row.clip]
        reason = clip.problem or why
        if not reason and int(clip.duration * 1000 / 10 / 2) < len(transcript or ""):
            reason = "too short for its transcript"  # Coqui's rule: one 20 ms step per character
        if not reason and clip.duration > options.max_duration:
            reason = f"longer than --max_duration {options.max_duration:g} s"
        if not reason and clip.duration < options.min_duration:
            reason = f"shorter than --min_duration {options.min_duration:g} s"
        if reason:
            result.skipped.append((row, reason, clip.detail if clip.problem else ""))
        else:
            result.kept.append((row, clip, transcript or ""))
    _report(result, f"{name}.tsv")
    return result


def _train_all(results: list[SetResult], options: ImportOptions) -> SetResult:
    """validated.tsv's rows without the speakers and sentences of the dev and test sets (Coqui's train-all)."""
    held_out = [kept for r in results if r.name in ("dev", "test") for kept in r.kept]
    speakers = {row.client_id for row, _, _ in held_out if row.client_id}
    sentences = {transcript for _, _, transcript in held_out}
    validated = next(r for r in results if r.name == "validated")
    kept = [k for k in validated.kept if k[0].client_id not in speakers and k[2] not in sentences]
    log.info(
        f"train-all: {len(kept)} of validated.tsv's {len(validated.kept)} usable rows, without the dev and test "
        "sets' speakers and sentences"
    )
    return SetResult("train-all", kept, [])


def _report(result: SetResult, tsv: str) -> None:
    log.info(f"{tsv}: imported {len(result.kept)} of {len(result.kept) + len(result.skipped)} samples")
    reasons = Counter(reason for _, reason, _ in result.skipped)
    for reason, count in reasons.most_common():
        listed = [f"{row.where}: {detail or row.clip}" for row, why, detail in result.skipped if why == reason]
        listed = listed[:MAX_LISTED_PER_REASON]
        more = f" (and {count - len(listed)} more, see {SKIPPED_LIST})" if count > len(listed) else ""
        log.info(f"  skipped {count}: {reason}{more}\n" + "\n".join(f"    {line}" for line in listed))


def _skipped_text(skipped: list[tuple[Row, str, str]]) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["where", "clip", "reason", "detail", "sentence"])
    for row, reason, detail in skipped:
        writer.writerow([row.where, row.clip, reason, detail, row.sentence])
    return out.getvalue()


def _hours(kept: list[tuple[Row, ClipInfo, str]]) -> str:
    seconds = int(sum(clip.duration for _, clip, _ in kept))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
