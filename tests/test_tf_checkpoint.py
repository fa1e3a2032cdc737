import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import coqui_stt_training.formats.tf_bundle as tfc
from coqui_stt_training.formats.crc32c import crc32c, masked_crc32c
from coqui_stt_training.formats.tf_bundle import TFCheckpointError, TFCheckpointReader, write_tf_checkpoint
from coqui_stt_training.formats.tf_state_file import read_state_file, read_state_file_all, write_state_file
from tests import helpers

FIXTURES = Path(helpers.FIXTURES)
LDC_DIR = FIXTURES / "ldc93s1-h100-e20" / "checkpoint"
LDC = str(LDC_DIR / "best_dev-20")
CUDNN = str(FIXTURES / "ldc93s1-h100-e20-cudnn" / "checkpoint" / "best_dev-20")
RU = str(FIXTURES / "ru-h100-drop1" / "checkpoint" / "best_dev-29")
LSTM = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell"


def expected_variables(n_classes: int) -> dict[str, tuple[int, ...]]:
    """Coqui's variables for n_hidden 100: every weight with its two Adam slots, plus the optimizer scalars."""
    weights = {
        "layer_1/weights": (494, 100), "layer_1/bias": (100,),
        "layer_2/weights": (100, 100), "layer_2/bias": (100,),
        "layer_3/weights": (100, 100), "layer_3/bias": (100,),
        f"{LSTM}/kernel": (200, 400), f"{LSTM}/bias": (400,),
        "layer_5/weights": (100, 100), "layer_5/bias": (100,),
        "layer_6/weights": (100, n_classes), "layer_6/bias": (n_classes,),
    }  # fmt: skip
    expected = {}
    for name, shape in weights.items():
        expected.update({name: shape, name + "/Adam": shape, name + "/Adam_1": shape})
    expected.update({"beta1_power": (), "beta2_power": (), "global_step": (), "learning_rate": ()})
    return expected


# ---- CRC32C -------------------------------------------------------------------------------------


def test_crc32c_known_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


def test_crc32c_continues_over_pieces():
    data = np.random.default_rng(0).integers(0, 256, 8192 * 17 + 123, dtype=np.uint8).tobytes()
    piecewise = 0
    for i in range(0, len(data), 1000):
        piecewise = crc32c(data[i : i + 1000], piecewise)
    assert crc32c(data) == piecewise
    assert crc32c(data[77:], crc32c(data[:77])) == crc32c(data)


def test_crc32c_of_buffers_other_than_bytes_and_longer_than_one_piece():
    """A tensor read into a bytearray, or a numpy array, is checked in pieces (the C library takes bytes)."""
    data = np.random.default_rng(1).integers(0, 256, 2 * (4 << 20) + 8192 * 20 + 5, dtype=np.uint8)
    expected = crc32c(data.tobytes())
    assert crc32c(bytearray(data.tobytes())) == expected
    assert crc32c(data) == expected
    assert crc32c(memoryview(data)[5:]) == crc32c(data[5:].tobytes())


def test_masked_crc32c_is_tfrecord_masking():
    crc = crc32c(b"abc")
    assert masked_crc32c(b"abc") == ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# ---- reading genuine Coqui STT 1.4 checkpoints -----------------------------------------------------


@pytest.mark.parametrize("prefix, n_classes, step", [(LDC, 29, 20), (RU, 35, 29)], ids=["ldc93s1", "ru"])
def test_reads_every_tensor_of_coqui_checkpoint(prefix, n_classes, step):
    reader = TFCheckpointReader(prefix)
    expected = expected_variables(n_classes)
    assert reader.names() == sorted(expected)
    for name, shape in expected.items():
        assert name in reader
        array = reader.get(name)  # also checks the stored CRC32C
        assert reader.shape(name) == shape
        assert array.shape == shape
        assert reader.dtype(name) == (np.int64 if name == "global_step" else np.float32)
        assert array.dtype == reader.dtype(name)
        assert np.isfinite(array).all()
    assert reader.get("global_step").ndim == 0
    assert int(reader.get("global_step")) == step
    assert reader.get("learning_rate") == np.float32(0.001)
    # Adam's power accumulators hold beta^(steps + 1)
    np.testing.assert_allclose(reader.get("beta1_power"), 0.9 ** (step + 1), rtol=1e-5)
    np.testing.assert_allclose(reader.get("beta2_power"), 0.999 ** (step + 1), rtol=1e-5)
    assert "no/such/tensor" not in reader


def test_reads_cudnn_variable_set():
    reader = TFCheckpointReader(CUDNN)
    assert reader.shape("cudnn_lstm/opaque_kernel") == (4 * 100 * 100 + 4 * 100 * 100 + 8 * 100,)
    assert reader.shape("cudnn_lstm/opaque_kernel/Adam_1") == (80800,)
    assert f"{LSTM}/kernel" in reader
    assert f"{LSTM}/kernel/Adam" not in reader
    ldc = TFCheckpointReader(LDC)
    np.testing.assert_array_equal(reader.get(f"{LSTM}/kernel"), ldc.get(f"{LSTM}/kernel"))


# ---- writing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [LDC, CUDNN, RU], ids=["ldc93s1", "cudnn", "ru"])
def test_rewriting_coqui_checkpoint_reproduces_tf_bytes(tmp_path, prefix):
    # TF's BundleWriter is deterministic (sorted keys, fixed table options, no timestamps), and
    # the Saver adds tensors in sorted order, so both files come out byte for byte the same.
    reader = TFCheckpointReader(prefix)
    write_tf_checkpoint(str(tmp_path / "copy"), {name: reader.get(name) for name in reader.names()})
    for suffix in (".index", ".data-00000-of-00001"):
        assert (tmp_path / ("copy" + suffix)).read_bytes() == Path(prefix + suffix).read_bytes(), suffix
    assert sorted(os.listdir(tmp_path)) == ["copy.data-00000-of-00001", "copy.index"]  # no temporary files left


def test_round_trip_of_all_dtypes_and_shapes(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f64": rng.standard_normal(5),
        "f16": rng.standard_normal((2, 2)).astype(np.float16),
        "i32": rng.integers(-(2**31), 2**31, (7,), dtype=np.int32),
        "i64": np.array(-(2**62), dtype=np.int64),
        "i16": np.array([-3, 4], dtype=np.int16),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u8": np.arange(256, dtype=np.uint8),
        "bool": np.array([[True, False, True]]),
        "scalar": np.float32(2.5),
        "empty": np.zeros((3, 0), np.float32),
        "big_endian": np.arange(6, dtype=">f4").reshape(2, 3),
        "transposed": np.arange(12, dtype=np.int32).reshape(3, 4).T,
        "unicode/имя": np.ones(1, np.float32),
    }
    write_tf_checkpoint(str(tmp_path / "ckpt"), tensors)
    reader = TFCheckpointReader(str(tmp_path / "ckpt"))
    assert reader.names() == sorted(tensors)
    for name, expected in tensors.items():
        got = reader.get(name)
        assert got.shape == np.shape(expected)
        assert got.dtype == np.asarray(expected).dtype.newbyteorder("=")
        np.testing.assert_array_equal(got, expected)
    got = reader.get("f32")
    got[0, 0] = 1  # arrays we hand out are ordinary writable arrays


def test_round_trip_across_many_blocks_and_restarts(tmp_path):
    # Long shared prefixes exercise prefix compression; 300 keys cross many restart points (every
    # 16 keys) and, with a small block size, many data blocks and index entries.
    tensors = {f"scope/{'x' * 60}/layer_{i:03d}/weights": np.full(i % 3, i, np.int32) for i in range(300)}
    tensors.update({"a": np.float32(1), "b\xff": np.float32(2), "zz": np.float32(3)})
    for block_size in (64, 4096, 262144):
        write_tf_checkpoint(str(tmp_path / f"ckpt{block_size}"), tensors, block_size=block_size)
        reader = TFCheckpointReader(str(tmp_path / f"ckpt{block_size}"))
        assert reader.names() == sorted(tensors)
        for name, expected in tensors.items():
            np.testing.assert_array_equal(reader.get(name), expected)
    # a block is closed once it holds >= 64 bytes, i.e. after each long-named entry; "zz" gets the last one
    assert data_block_count(tmp_path / "ckpt64.index") == 300 + 1
    assert data_block_count(tmp_path / "ckpt4096.index") == 3
    assert data_block_count(tmp_path / "ckpt262144.index") == 1


def data_block_count(index_path: Path) -> int:
    table = index_path.read_bytes()
    footer = table[-48:]
    index_handle = tfc._parse_block_handle(footer, tfc._parse_block_handle(footer, 0)[1])[0]
    return len(tfc._block_entries(tfc._read_block(table, index_handle)))


def test_rejects_tensors_tf_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_tf_checkpoint(str(tmp_path / "x"), {"s": np.array(["text"])})
    with pytest.raises(ValueError, match="name"):
        write_tf_checkpoint(str(tmp_path / "x"), {"": np.float32(1)})


# ---- damaged files --------------------------------------------------------------------------------


def copy_checkpoint(prefix: str, directory: Path) -> str:
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copyfile(prefix + suffix, directory / (Path(prefix).name + suffix))
        os.chmod(directory / (Path(prefix).name + suffix), 0o644)
    return str(directory / Path(prefix).name)


def test_flipped_data_byte_names_the_tensor(tmp_path):
    prefix = copy_checkpoint(LDC, tmp_path)
    offset = TFCheckpointReader(prefix).entry("layer_2/weights").offset + 1234
    with open(prefix + ".data-00000-of-00001", "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))
    reader = TFCheckpointReader(prefix)
    with pytest.raises(TFCheckpointError, match=r"data-00000-of-00001: tensor 'layer_2/weights' fails its CRC32C"):
        reader.get("layer_2/weights")
    reader.get("layer_2/weights", verify=False)
    reader.get("layer_2/bias")  # its neighbours are fine


def test_truncated_data_file(tmp_path):
    prefix = copy_checkpoint(LDC, tmp_path)
    os.truncate(prefix + ".data-00000-of-00001", 1000)
    with pytest.raises(TFCheckpointError, match="truncated, tensor 'learning_rate'"):
        TFCheckpointReader(prefix).get("learning_rate")


@pytest.mark.parametrize("keep", [0, 20, 700, 1386])
def test_truncated_index(tmp_path, keep):
    prefix = copy_checkpoint(LDC, tmp_path)
    os.truncate(prefix + ".index", keep)
    with pytest.raises(TFCheckpointError, match=r"best_dev-20\.index: "):
        TFCheckpointReader(prefix)


def test_corrupt_index_block(tmp_path):
    prefix = copy_checkpoint(LDC, tmp_path)
    with open(prefix + ".index", "r+b") as f:
        f.seek(100)
        f.write(b"?")
    with pytest.raises(TFCheckpointError, match="block at offset 0 fails its CRC32C"):
        TFCheckpointReader(prefix)


def test_missing_index():
    with pytest.raises(TFCheckpointError, match="cannot read checkpoint index"):
        TFCheckpointReader("/nonexistent/best_dev-1")


# ---- state files ----------------------------------------------------------------------------------


def test_reads_coqui_state_files():
    assert read_state_file(str(LDC_DIR / "best_dev_checkpoint")) == LDC
    assert read_state_file_all(str(LDC_DIR / "best_dev_checkpoint")) == [LDC]
    assert read_state_file(str(LDC_DIR / "checkpoint")) == str(LDC_DIR / "train-20")
    assert read_state_file(str(LDC_DIR / "no_such_state")) is None
    assert read_state_file_all(str(LDC_DIR / "no_such_state")) == []


def test_writes_state_file_as_tf_does(tmp_path):
    state = tmp_path / "best_dev_checkpoint"
    write_state_file(str(state), str(tmp_path / "best_dev-20"), [str(tmp_path / "best_dev-20")])
    assert state.read_bytes() == (LDC_DIR / "best_dev_checkpoint").read_bytes()


def test_state_file_round_trip_with_relative_and_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkdir("run")
    outside = str(tmp_path / "elsewhere" / 'we"ird\\ имя')
    write_state_file("run/checkpoint", "run/train-3", ["run/sub/train-1", outside])
    text = Path("run/checkpoint").read_text()
    assert text.splitlines() == [
        'model_checkpoint_path: "train-3"',
        'all_model_checkpoint_paths: "sub/train-1"',
        f'all_model_checkpoint_paths: "{tmp_path}/elsewhere/we\\"ird\\\\ \\320\\270\\320\\274\\321\\217"',
        'all_model_checkpoint_paths: "train-3"',  # TF always lists the latest last
    ]
    assert read_state_file("run/checkpoint") == "run/train-3"
    assert read_state_file_all("run/checkpoint") == ["run/sub/train-1", outside, "run/train-3"]


def test_state_file_extras_and_errors(tmp_path):
    state = tmp_path / "checkpoint"
    state.write_text(
        "model_checkpoint_path: 'a\\'b'\nall_model_checkpoint_timestamps: 1600000000.5\n"
        'last_preserved_timestamp: 1599999999.0\nall_model_checkpoint_paths: "x\\ty\\303\\251"\n'
    )
    assert read_state_file(str(state)) == str(tmp_path / "a'b")
    assert read_state_file_all(str(state)) == [str(tmp_path / "x\tyé")]
    state.write_text('all_model_checkpoint_paths: "x"\n')
    with pytest.raises(TFCheckpointError, match="checkpoint: checkpoint state file has no model_checkpoint_path"):
        read_state_file(str(state))
    state.write_text("model_checkpoint_path: best_dev-3\n")
    with pytest.raises(TFCheckpointError, match="line 1: model_checkpoint_path is not a quoted string"):
        read_state_file(str(state))


# ---- fuzzing: a damaged index or data file gives TFCheckpointError, never a crash or a hang ----------

INDEX_BYTES = Path(LDC + ".index").read_bytes()


@settings(max_examples=200, deadline=5000)
@given(cut=st.integers(0, 100), damage=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6))
def test_fuzz_index_reader_damaged_index(tmp_path_factory, cut, damage):
    data = bytearray(INDEX_BYTES)
    for position, value in damage:
        data[position % len(data)] = value
    folder = tmp_path_factory.mktemp("fuzz")
    prefix = str(folder / "best_dev-20")
    Path(prefix + ".index").write_bytes(bytes(data[: max(1, len(data) * cut // 100)]))
    shutil.copy(LDC + ".data-00000-of-00001", prefix + ".data-00000-of-00001")
    try:
        reader = TFCheckpointReader(prefix)
        for name in reader.names():
            reader.get(name)
    except TFCheckpointError as e:
        assert prefix in str(e)
