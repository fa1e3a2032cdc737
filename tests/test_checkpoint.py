import json
import os

import numpy as np
import pytest
import safetensors.numpy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coqui_stt_training.checkpoints import store
from coqui_stt_training.checkpoints.layout import to_tensors
from coqui_stt_training.checkpoints.load import load_into, shared_output_columns
from coqui_stt_training.checkpoints.run_state import RunState
from coqui_stt_training.checkpoints.store import CheckpointError, find_checkpoint, save
from coqui_stt_training.decoding.beam_search import greedy_decode
from coqui_stt_training.formats.tf_bundle import write_tf_checkpoint
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.deepspeech import DeepSpeech, ModelDimensions
from coqui_stt_training.model.loss import ctc_loss
from coqui_stt_training.model.optimizer import TFAdam
from tests.helpers import FIXTURES

COQUI_LDC = os.path.join(FIXTURES, "ldc93s1-h100-e20", "checkpoint")


def fresh_model(n_classes=29, n_hidden=100):
    model = DeepSpeech(ModelDimensions(n_hidden, n_classes))
    model.reset_parameters(torch.Generator().manual_seed(0))
    return model, TFAdam(model.trainable_parameters(), lr=0.5)


def reinitialised(report) -> list[str]:
    return [name for name, _, action in report.rows if action == "re-initialised"]


@pytest.mark.parametrize("folder,n_classes", [("ldc93s1-h100-e20", 29), ("ru-h100-drop1", 35)])
def test_coqui_checkpoint_gives_coquis_logits_and_loss(folder, n_classes):
    """Parity with genuine Coqui STT 1.4.0: the same weights on TF's own features give TF's logits."""
    model, optimizer = fresh_model(n_classes)
    ckpt_dir = os.path.join(FIXTURES, folder, "checkpoint")
    report = load_into(find_checkpoint(ckpt_dir, "best_dev"), model, optimizer, learning_rate=0.5)
    assert reinitialised(report) == []
    assert optimizer.lr == pytest.approx(0.001)
    assert report.source_classes == n_classes
    assert report.target_classes == n_classes
    model.eval()
    ref = np.load(os.path.join(FIXTURES, folder, "reference_16k.npz"))
    alphabet = load_alphabet(os.path.join(ckpt_dir, "alphabet.txt"))
    for i in range(len(ref["wavs"])):
        with torch.no_grad():
            logits = model(torch.from_numpy(ref[f"features_{i}"])[None])[:, 0]
        np.testing.assert_allclose(logits.numpy(), ref[f"logits_{i}"], rtol=1e-4, atol=1e-4)
        length = torch.tensor([logits.shape[0]])
        assert greedy_decode(logits[:, None], length, alphabet) == greedy_decode(
            torch.from_numpy(ref[f"logits_{i}"])[:, None], length, alphabet
        )
    with open(os.path.join(FIXTURES, folder, "test_output.json"), encoding="utf-8") as f:
        expected = json.load(f)[0]
    with torch.no_grad():
        logits = model(torch.from_numpy(ref["features_0" if folder.startswith("ldc") else "features_1"])[None])
        labels = torch.tensor(alphabet.encode(expected["src"]))
        loss = ctc_loss(logits, torch.tensor([logits.shape[0]]), labels, torch.tensor([len(labels)]))
    assert float(loss) == pytest.approx(expected["loss"], rel=1e-3)


def test_cudnn_style_checkpoint_loads_with_zero_lstm_moments():
    model, optimizer = fresh_model()
    plain, _ = fresh_model()
    load_into(
        find_checkpoint(os.path.join(FIXTURES, "ldc93s1-h100-e20-cudnn", "checkpoint"), "best_dev"),
        model,
        optimizer,
        0.001,
    )
    load_into(find_checkpoint(COQUI_LDC, "best_dev"), plain, TFAdam(plain.trainable_parameters()), 0.001)
    for a, b in zip(model.parameters(), plain.parameters()):
        assert torch.equal(a, b)
    m, v = optimizer.slots(model.lstm.weight_ih_l0)
    assert m.abs().max() == 0
    assert v.abs().max() == 0


def test_save_and_load_round_trip_every_tensor(tmp_path):
    model, optimizer = fresh_model()
    features = torch.randn(2, 30, 26)
    loss = ctc_loss(model(features), torch.tensor([30, 30]), torch.tensor([1, 2, 3, 4]), torch.tensor([2, 2])).mean()
    loss.backward()
    optimizer.step()
    tensors = to_tensors(model, optimizer, global_step=7)
    prefix = save(str(tmp_path), "train", tensors, RunState(epochs_done=3), max_to_keep=2)
    assert prefix.endswith("train-7")
    assert find_checkpoint(str(tmp_path), "train") == prefix
    other, other_optimizer = fresh_model()
    report = load_into(prefix, other, other_optimizer, learning_rate=0.1)
    assert report.global_step == 7
    assert other_optimizer.lr == pytest.approx(0.5)
    again = to_tensors(other, other_optimizer, 7)
    assert tensors.keys() == again.keys()
    for name in tensors:
        np.testing.assert_array_equal(tensors[name], again[name], err_msg=name)
    state = store.read_run_state(prefix)
    assert state is not None and set(state.crc32c or {}) == set(tensors)  # every tensor's checksum recorded
    state.crc32c = None
    assert state == RunState(global_step=7, epochs_done=3)


def test_max_to_keep_prunes_oldest(tmp_path):
    model, optimizer = fresh_model()
    for step in (1, 2, 3):
        save(str(tmp_path), "train", to_tensors(model, optimizer, step), RunState(), max_to_keep=2)
    names = sorted(os.listdir(tmp_path))
    assert "train-1.safetensors" not in names
    assert {"train-2.safetensors", "train-3.safetensors"} <= set(names)
    assert find_checkpoint(str(tmp_path), "train").endswith("train-3")


def test_mismatched_alphabet_suggests_drop_source_layers():
    model, optimizer = fresh_model(n_classes=35)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(CheckpointError, match="--drop_source_layers 1"):
        load_into(find_checkpoint(COQUI_LDC, "best_dev"), model, optimizer, 0.001)
    for a, b in zip(before, model.parameters()):
        assert torch.equal(a, b)  # nothing half-loaded


# Coqui's table of what --drop_source_layers N drops, written out rather than derived from the code under test.
DOCUMENTED_DROPS = {
    1: {"layer_6"},
    2: {"layer_5", "layer_6"},
    3: {"cudnn_lstm", "layer_5", "layer_6"},
    4: {"layer_3", "cudnn_lstm", "layer_5", "layer_6"},
    5: {"layer_2", "layer_3", "cudnn_lstm", "layer_5", "layer_6", "beta2_power"},
    6: {"layer_2", "layer_3", "cudnn_lstm", "layer_5", "layer_6", "beta2_power"},  # warns, drops 5
}


@pytest.mark.parametrize("n", sorted(DOCUMENTED_DROPS))
def test_drop_source_layers_changes_exactly_the_documented_tensors(n):
    """Tensor by tensor: a dropped one keeps the fresh initialisation (moments zero), every other one
    equals the Coqui source checkpoint's, Adam moments, step and learning rate included."""
    prefix = find_checkpoint(COQUI_LDC, "best_dev")
    source = store.open_checkpoint(prefix)
    model, optimizer = fresh_model(n_classes=35)
    fresh = to_tensors(model, optimizer, global_step=0)
    report = load_into(prefix, model, optimizer, 0.5, drop_source_layers=n)
    after = to_tensors(model, optimizer, report.global_step)
    assert after.keys() == fresh.keys()
    for name in after:
        dropped = name.split("/")[0] in DOCUMENTED_DROPS[n]
        expected = fresh[name] if dropped else source.get(name)
        np.testing.assert_array_equal(after[name], expected, err_msg=f"N={n} {name}")
        assert (name in reinitialised(report)) == dropped, name
    assert report.global_step == 20
    assert optimizer.lr == pytest.approx(0.001)
    assert report.source_classes == 29
    assert report.target_classes == 35


def test_drop_source_layers_zero_with_other_alphabet_is_refused_with_the_flag_to_use():
    model, optimizer = fresh_model(n_classes=35)
    with pytest.raises(CheckpointError, match=r"28 labels and the alphabet has 34.*--drop_source_layers 1"):
        load_into(find_checkpoint(COQUI_LDC, "best_dev"), model, optimizer, 0.001)


def test_shared_symbols_keep_their_output_columns_and_the_blank():
    prefix = find_checkpoint(COQUI_LDC, "best_dev")
    source_labels = load_alphabet(os.path.join(COQUI_LDC, "alphabet.txt")).labels
    target_labels = ["я", "a", " ", "ж", "'", "b"]
    columns = shared_output_columns(source_labels, target_labels)
    assert columns == [None, 1, 0, None, 27, 2, 28]
    model, optimizer = fresh_model(n_classes=7)
    fresh = to_tensors(model, optimizer, 0)
    report = load_into(prefix, model, optimizer, 0.5, drop_source_layers=1, output_columns=columns)
    after, source = to_tensors(model, optimizer, 20), store.open_checkpoint(prefix)
    for name in ("layer_6/weights", "layer_6/bias", "layer_6/weights/Adam", "layer_6/bias/Adam_1"):
        for j, i in enumerate(columns):
            want = fresh[name][..., j] if i is None else source.get(name)[..., i]
            np.testing.assert_array_equal(after[name][..., j], want, err_msg=f"{name} column {j}")
    np.testing.assert_array_equal(after["layer_5/weights"], source.get("layer_5/weights"))
    assert any("5 of 7 columns" in action for name, _, action in report.rows if name == "layer_6/weights")


def test_truncated_or_foreign_safetensors_files_are_named_errors(tmp_path):
    model, optimizer = fresh_model()
    prefix = save(str(tmp_path), "train", to_tensors(model, optimizer, 1), RunState(), max_to_keep=1)
    with open(prefix + ".safetensors", "rb") as f:
        data = f.read()
    cases = {
        "truncated": data[: len(data) - 100],
        "empty": b"",
        "pickle": b"\x80\x04\x95" + bytes(64),
        "torch zip": b"PK\x03\x04" + bytes(64),
        "bad header": len(data).to_bytes(8, "little") + b"{not json",
    }
    for label, content in cases.items():
        broken = str(tmp_path / label.replace(" ", "_"))
        with open(broken + ".safetensors", "wb") as f:
            f.write(content)
        with pytest.raises(
            CheckpointError,
            match=f"{broken}.safetensors: (truncated|not a safetensors file|a Python pickle .*refusing to load it)",
        ):
            load_into(broken, model, optimizer, 0.001)
    # the intact file reads back exactly what safetensors wrote
    reference = safetensors.numpy.load_file(prefix + ".safetensors")
    ours = store.open_checkpoint(prefix)
    assert ours.names() == sorted(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(ours.get(name), value)
        assert ours.get(name).shape == value.shape
        assert ours.get(name).dtype == value.dtype


def test_other_n_hidden_or_variable_set_is_a_clear_error(tmp_path):
    coqui = find_checkpoint(COQUI_LDC, "best_dev")
    model, optimizer = fresh_model(n_hidden=64)
    with pytest.raises(
        CheckpointError,
        match=r"layer_1/weights has shape \[494, 100\] but the model needs "
        r"\[494, 64\].*pass --n_hidden 100",
    ):
        load_into(coqui, model, optimizer, 0.001)
    # a checkpoint of something else entirely: names we do not know, none we need
    write_tf_checkpoint(
        str(tmp_path / "other-1"),
        {"encoder/conv1/kernel": np.zeros((3, 3), np.float32), "global_step": np.array(1, np.int64)},
    )
    model, optimizer = fresh_model()
    with pytest.raises(CheckpointError, match=r"checkpoint lacks layer_1/weights, .*not a DeepSpeech checkpoint"):
        load_into(str(tmp_path / "other-1"), model, optimizer, 0.001)


# ---- fuzzing: a stranger's safetensors header gives CheckpointError, never a crash -------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ENTRY = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "F64", "I64", "U8", "BF16", "X"]) | JSON,
        "shape": st.lists(st.integers(-2, 1 << 40), max_size=3) | JSON,
        "data_offsets": st.lists(st.integers(-8, 1 << 40), max_size=3) | JSON,
    }
)


@settings(max_examples=300, deadline=2000)
@given(
    header=st.dictionaries(st.text(max_size=6), ENTRY | JSON, max_size=4) | JSON,
    data=st.binary(max_size=64),
    size_delta=st.integers(-3, 3),
)
def test_fuzz_safetensors_reader(tmp_path_factory, header, data, size_delta):
    text = json.dumps(header).encode()
    prefix = str(tmp_path_factory.mktemp("fuzz") / "train-1")
    with open(prefix + ".safetensors", "wb") as f:
        f.write((len(text) + size_delta).to_bytes(8, "little", signed=True) + text + data)
    try:
        reader = store.SafetensorsCheckpoint(prefix)
        for name in reader.names():
            value = reader.get(name)
            assert value.shape == reader.shape(name)
    except CheckpointError as e:
        assert str(e).startswith(prefix + ".safetensors: ")


def test_a_tensor_of_the_wrong_dtype_is_refused_before_any_parameter_changes(tmp_path):
    model, optimizer = fresh_model()
    tensors = to_tensors(model, optimizer, 1)
    tensors["layer_6/bias"] = tensors["layer_6/bias"].astype(np.int32)
    tensors["layer_1/weights"] = tensors["layer_1/weights"] + 1
    prefix = save(str(tmp_path), "train", tensors, RunState(), max_to_keep=1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with pytest.raises(CheckpointError, match=f"^{prefix}: layer_6/bias is int32, not a floating-point tensor"):
        load_into(prefix, model, optimizer, 0.001)
    for name, p in model.named_parameters():
        assert torch.equal(before[name], p), name


def test_pruning_keeps_the_newest_and_never_touches_best_dev(tmp_path):
    model, optimizer = fresh_model()
    save(str(tmp_path), "best_dev", to_tensors(model, optimizer, 2), RunState(), max_to_keep=1)
    for step in range(1, 6):
        save(str(tmp_path), "train", to_tensors(model, optimizer, step), RunState(), max_to_keep=2)
    files = sorted(os.listdir(tmp_path))
    assert [f for f in files if f.endswith(".safetensors")] == [
        "best_dev-2.safetensors",
        "train-4.safetensors",
        "train-5.safetensors",
    ]
    assert find_checkpoint(str(tmp_path), "train").endswith("train-5")
    save(str(tmp_path), "train", to_tensors(model, optimizer, 6), RunState(), max_to_keep=0)  # 0 keeps the newest
    assert find_checkpoint(str(tmp_path), "train").endswith("train-6")
    assert os.path.isfile(tmp_path / "train-6.json")
    assert os.path.isfile(tmp_path / "best_dev-2.safetensors")


@pytest.mark.parametrize("others", [0, 1])
def test_a_checkpoint_saved_again_under_its_name_is_not_named_while_half_replaced(tmp_path, monkeypatch, others):
    """A resumed run can save best_dev-N again (the step it resumed at, re-evaluated). Its .safetensors and
    .json are two renames; dying between them must not leave the state file naming a mismatched pair."""
    model, optimizer = fresh_model()
    for step in range(2 - others, 3):
        save(str(tmp_path), "best_dev", to_tensors(model, optimizer, step), RunState(), max_to_keep=2)
    again = to_tensors(model, optimizer, 2)
    again["learning_rate"] = np.asarray(again["learning_rate"] / 2, dtype=np.float32)
    real_write = store.write_file_atomically

    def dies_before_the_json(path, data):
        if path.endswith(".json"):
            raise OSError(5, "Input/output error", path)  # where SIGKILL would have struck
        real_write(path, data)

    monkeypatch.setattr(store, "write_file_atomically", dies_before_the_json)
    with pytest.raises(CheckpointError):
        save(str(tmp_path), "best_dev", again, RunState(), max_to_keep=2)
    named = find_checkpoint(str(tmp_path), "best_dev")
    assert named == (str(tmp_path / "best_dev-1") if others else None)
    if named:
        assert store.damage(named) is None
