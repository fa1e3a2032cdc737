"""Bad input found before anything is written, and said as it is (issue 33): overlay sources, truncated audio,
a text file given as a graph, flags the user never gave; and exports, whole or not at all."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from coqui_stt_training import convert, evaluate, export, train
from coqui_stt_training.checkpoints import store
from coqui_stt_training.data import audio
from coqui_stt_training.exports import directory
from tests.helpers import ALPHABET, LDC, LDC_WAV, ROOT, digest, repeated_csv, run, sha256, wait_for

SMALL = ["--alphabet_config_path", ALPHABET, "--n_hidden", "24", "--show_progressbar", "false", "--epochs", "1"]


def test_a_missing_overlay_source_is_found_before_the_run_writes_anything(tmp_path, cli):
    ckpt = tmp_path / "ckpt"
    argv = [*SMALL, "--train_files", LDC, "--checkpoint_dir", str(ckpt)]
    status, log = cli(train.main, [*argv, "--augment", f"overlay[source={tmp_path}/missing.csv]"])
    assert status == 1, log
    (line,) = [line for line in log.splitlines() if line.startswith("E ")]
    assert line.startswith(f"E --augment overlay: source={tmp_path}/missing.csv: ") and "missing.csv" in line[60:], line
    assert not ckpt.exists()
    noise = tmp_path / "noise.csv"
    noise.write_text(f"wav_filename\n{LDC_WAV}\n{tmp_path}/gone.wav\n")
    status, log = cli(train.main, [*argv, "--augment", f"overlay[source={noise}]"])
    assert status == 1, log
    assert f"E --augment overlay: source={noise}: 1 clip(s) cannot be read:\n    {noise}, row 3: audio file not " \
           f"found: {tmp_path}/gone.wav" in log  # fmt: skip
    assert not ckpt.exists()


def test_a_truncated_wav_is_named_by_the_data_check_with_both_sizes(tmp_path, cli):
    with open(LDC_WAV, "rb") as f:
        (tmp_path / "cut.wav").write_bytes(f.read()[:2000])
    data = tmp_path / "train.csv"
    data.write_text(f"wav_filename,wav_filesize,transcript\n{LDC_WAV},1,she had\ncut.wav,2,your dark suit\n")
    status, log = cli(train.main, [*SMALL, "--train_files", str(data), "--checkpoint_dir", str(tmp_path / "ckpt")])
    assert status == 1, log
    assert "  truncated audio: 1 row(s)\n" in log
    assert f"    {data}, row 3: truncated audio {tmp_path}/cut.wav: its header promises 93594 bytes of samples, " \
           "the file holds 1956" in log  # fmt: skip
    assert not os.path.exists(tmp_path / "ckpt")


def test_a_text_file_named_pb_is_said_to_be_no_tensorflow_graph(tmp_path, cli):
    fake = tmp_path / "output_graph.pb"
    fake.write_text("these are my notes, not a model\n")
    out = tmp_path / "out"
    status, log = cli(convert.main, ["--load_checkpoint_dir", str(fake), "--save_checkpoint_dir", str(out)])
    assert status == 1, log
    assert log.splitlines()[-1].startswith(f"E {fake}: not a TensorFlow graph (a .pb export) nor a .tflite model (")
    assert not out.exists()


def test_no_warning_about_n_hidden_unless_it_was_given(tmp_path, cli):
    ckpt = str(tmp_path / "ckpt")
    assert cli(train.main, [*SMALL, "--train_files", LDC, "--checkpoint_dir", ckpt])[0] == 0
    status, log = cli(evaluate.main, ["--checkpoint_dir", ckpt, "--test_files", LDC, "--export_beam_width", "2"])
    assert status == 0 and "WARNING" not in log, log
    status, log = cli(evaluate.main, ["--checkpoint_dir", ckpt, "--test_files", LDC, "--export_beam_width", "2",
                                      "--n_hidden", "64"])  # fmt: skip
    assert status == 0 and "--n_hidden value (64) is different from value found in checkpoint (24)" in log, log


# ---- exports: whole or not at all ----------------------------------------------------------------------------


def signal_inside(monkeypatch, module, name):
    """SIGTERM to this process while `module.name` runs (the command line's handler turns it into a stop)."""
    original = getattr(module, name)

    def signalled(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, signalled)


@pytest.mark.parametrize(
    "where, earlier",
    [("tflite_bytes", False), ("onnx_bytes", False), ("_zip", False), ("tflite_bytes", True), ("onnx_bytes", True)],
)
def test_an_export_stopped_anywhere_leaves_the_previous_one_and_the_same_command_works(
    where, earlier, tmp_path, monkeypatch, cli
):
    ckpt, out = str(tmp_path / "ckpt"), tmp_path / "out" / "model"
    assert cli(train.main, [*SMALL, "--train_files", LDC, "--checkpoint_dir", ckpt])[0] == 0
    argv = ["--checkpoint_dir", ckpt, "--export_dir", str(out), "--export_onnx", "true", "--export_zip", "true"]
    if earlier:  # an export from before, to be replaced: untouched until the new one is whole
        out.mkdir(parents=True)
        (out / "output_graph.tflite").write_bytes(b"the previous export")
        argv += ["--remove_export", "true", "--export_zip", "false"]  # (a zip needs an empty directory)
    before = digest(out) if earlier else None
    with monkeypatch.context() as patch:
        signal_inside(patch, directory, where)
        status, log = cli(export.main, argv)
    assert status == 128 + signal.SIGTERM, log
    assert log.splitlines()[-1] == f"I Stopped on SIGTERM while exporting; {out} is as it was. Run the same " \
                                   "command again to export"  # fmt: skip
    assert (digest(out) if earlier else out.exists()) == (before if earlier else False)
    assert sorted(os.listdir(out.parent)) == (["model"] if earlier else [])  # no partial export, no zip
    status, log = cli(export.main, argv)
    assert status == 0, log
    assert sorted(os.listdir(out)) == ["author_model_0.0.1.md", "output_graph.onnx", "output_graph.tflite"]
    assert (out / "output_graph.tflite").read_bytes()[4:8] == b"TFL3"


def test_an_export_killed_outright_leaves_no_export_and_the_next_one_clears_its_remains(tmp_path, cli):
    ckpt, out = str(tmp_path / "ckpt"), tmp_path / "model"
    assert cli(train.main, [*SMALL, "--train_files", LDC, "--checkpoint_dir", ckpt])[0] == 0
    argv = ["--checkpoint_dir", ckpt, "--export_dir", str(out)]
    killed_after_the_model = (  # SIGKILL, as the OOM killer sends: nothing of ours runs after it
        "import os, signal, sys\n"
        "from coqui_stt_training import export\n"
        "from coqui_stt_training.exports import directory\n"
        "write = directory.write_file_atomically\n"
        "def then_die(path, data):\n"
        "    write(path, data)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "directory.write_file_atomically = then_die\n"
        "export.main(sys.argv[1:])\n"
    )
    done = subprocess.run([sys.executable, "-c", killed_after_the_model, *argv], cwd=ROOT, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert not out.exists() and [n for n in os.listdir(tmp_path) if n.startswith(".model.partial-")]
    status, log = cli(export.main, argv)
    assert status == 0, log
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "model"]


def test_kenlms_progress_bar_does_not_bury_a_scorers_one_line_error(tmp_path, capfd):
    ckpt = str(tmp_path / "ckpt")
    assert run(train.main, [*SMALL, "--train_files", LDC, "--checkpoint_dir", ckpt], capfd)[0] == 0
    text = tmp_path / "words.scorer"
    text.write_text("hello world\nthese are words, not a language model\n")
    argv = ["--checkpoint_dir", ckpt, "--test_files", LDC, "--scorer_path", str(text)]
    status, out = run(evaluate.main, argv, capfd)  # (KenLM writes to the process's stderr, below sys.stderr)
    err = out
    assert status == 1
    assert "----5---10" not in err and f"Reading {text}" not in err, err
    assert err.splitlines()[-1].startswith(f"E {text}: KenLM cannot read it: neither a Coqui scorer package nor a ")


# ---- a signal is a signal everywhere ------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("at_file", [1, 30])
def test_a_signal_inside_an_audio_header_read_stops_the_data_check(at_file, workers, tmp_path, monkeypatch, cli):
    """The signal lands inside libsndfile's header read, whose caller turns any Exception into 'unreadable
    audio': a stop must pass through it as a stop, at once."""
    rows = "".join(f"{LDC_WAV},{i},she had your dark suit\n" for i in range(50))
    (tmp_path / "big.csv").write_text("wav_filename,wav_filesize,transcript\n" + rows)
    read, calls = audio.soundfile.info, []

    def interrupted(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == at_file:
            signal.raise_signal(signal.SIGINT)
        return read(path, *args, **kwargs)

    monkeypatch.setattr(audio.soundfile, "info", interrupted)
    ckpt = tmp_path / "ckpt"
    status, log = cli(train.main, [*SMALL, "--train_files", str(tmp_path / "big.csv"), "--checkpoint_dir", str(ckpt),
                                   "--data_workers", workers])  # fmt: skip
    assert status == 128 + signal.SIGINT, log
    assert log.splitlines()[-1] == (
        "I Stopped on SIGINT while checking the data; nothing was written. Run the same command again to start"
    )
    assert "unreadable" not in log and len(calls) == at_file  # stopped there, not 20 s later
    assert not ckpt.exists()


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                if int(f.read().rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry))
    return found


def test_a_data_worker_killed_mid_epoch_stops_the_run_with_a_checkpoint_and_resume_is_exact(tmp_path, cli):
    """SIGKILL to the data worker, as the OOM killer sends it: one line naming what happened and the checkpoint
    saved after the last whole step; the same command then ends where an uninterrupted run ends."""
    csv_path = repeated_csv(tmp_path, copies=40)  # enough batches for a worker (and a slow one: reverb)
    argv = lambda ckpt: [*SMALL, "--train_files", csv_path, "--epochs", "2", "--checkpoint_dir", str(tmp_path / ckpt),
                         "--augment", "reverb[delay=50,decay=2]", "--checkpoint_secs", "0"]  # fmt: skip
    assert cli(train.main, argv("whole"))[0] == 0
    child = subprocess.Popen([sys.executable, "-m", "coqui_stt_training.train", *argv("killed")], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    out = wait_for(child, "Training epoch 0...")
    while not (workers := children(child.pid)):
        time.sleep(0.01)
    time.sleep(0.3)  # past the fork's own moments (the epoch's batches take about two seconds)
    os.kill(workers[0], signal.SIGKILL)
    out += child.stdout.read()
    assert child.wait(timeout=120) == 1, out
    last = out.splitlines()[-1]
    assert re.fullmatch(
        r"E a data worker process died \(DataLoader worker \(pid[^;]*; out of memory\?\): training stopped at epoch "
        rf"0, batch \d+, checkpoint saved to {tmp_path}/killed/train-\d+\. Run the same command again to resume",
        last,
    ), out
    status, log = cli(train.main, argv("killed"))
    assert status == 0 and "Resuming the interrupted run from" in log, log
    newest = lambda ckpt: store.find_checkpoint(str(tmp_path / ckpt), "train") + ".safetensors"
    assert os.path.basename(newest("killed")) == os.path.basename(newest("whole"))
    assert sha256(newest("killed")) == sha256(newest("whole"))
