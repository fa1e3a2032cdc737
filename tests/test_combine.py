"""checkpoints/combine.py on tensors whose averages and mixtures are known."""

from __future__ import annotations

import numpy as np
import pytest

from coqui_stt_training.checkpoints.combine import average, interpolate, is_weight
from coqui_stt_training.checkpoints.layout import LSTM_SCOPE
from coqui_stt_training.checkpoints.load import shared_output_columns


def checkpoint(value: float, classes: int = 3, step: int = 0) -> dict[str, np.ndarray]:
    return {
        "layer_1/weights": np.full((2, 4), value, np.float32),
        "layer_1/weights/Adam": np.full((2, 4), 10 * value, np.float32),
        "layer_6/weights": np.arange(4 * classes, dtype=np.float32).reshape(4, classes) * value,
        "layer_6/bias": np.arange(classes, dtype=np.float32) * value,
        "global_step": np.array(step, np.int64),
        "learning_rate": np.array(0.001, np.float32),
    }


def test_weights_and_state_are_told_apart():
    assert is_weight("layer_1/weights") and is_weight(f"{LSTM_SCOPE}/bias")
    assert not any(is_weight(n) for n in ("layer_1/weights/Adam", "layer_1/weights/Adam_1", "global_step",
                                          "beta1_power", "beta2_power", "learning_rate"))  # fmt: skip


def test_averaging_gives_each_weights_mean_and_the_first_checkpoints_state():
    out = average([checkpoint(1.0, step=30), checkpoint(2.0, step=20), checkpoint(6.0, step=10)])
    np.testing.assert_array_equal(out["layer_1/weights"], np.full((2, 4), 3.0, np.float32))
    np.testing.assert_array_equal(out["layer_6/bias"], np.arange(3, dtype=np.float32) * 3.0)
    assert out["layer_1/weights"].dtype == np.float32
    np.testing.assert_array_equal(out["layer_1/weights/Adam"], np.full((2, 4), 10.0, np.float32))  # the first's
    assert int(out["global_step"]) == 30
    # float32 values whose float32 running sum would round: the mean is taken in float64
    big = [{"w": np.array([np.float32(2**24)], np.float32)}, {"w": np.array([np.float32(1.0)], np.float32)}]
    assert average(big)["w"][0] == np.float32((2**24 + 1) / 2)


def test_averaging_refuses_checkpoints_of_different_models():
    with pytest.raises(ValueError, match=r"layer_6/weights: of shape \[4, 5\] in checkpoint 2, \[4, 3\] in the first"):
        average([checkpoint(1.0), checkpoint(1.0, classes=5)])
    with pytest.raises(ValueError, match="no checkpoints"):
        average([])


def test_interpolation_mixes_shared_layers_and_the_output_layer_by_symbol():
    fine, source = checkpoint(2.0, classes=4, step=7), checkpoint(6.0, classes=3)
    # target alphabet [a, x, b] + blank; source [a, b] + blank: x is new
    columns = shared_output_columns(["a", "b"], ["a", "x", "b"])
    assert columns == [0, None, 1, 2]
    out = interpolate(fine, source, 0.25, columns)
    np.testing.assert_array_equal(out["layer_1/weights"], np.full((2, 4), 3.0, np.float32))  # 0.75*2 + 0.25*6
    expected = fine["layer_6/weights"].astype(np.float64)
    for c, s in enumerate(columns):
        if s is not None:
            expected[:, c] = 0.75 * expected[:, c] + 0.25 * source["layer_6/weights"][:, s]
    np.testing.assert_allclose(out["layer_6/weights"], expected)
    np.testing.assert_array_equal(out["layer_6/bias"][1], fine["layer_6/bias"][1])  # x: the source has none
    assert out["layer_6/bias"][3] == pytest.approx(0.75 * 3 * 2.0 + 0.25 * 2 * 6.0)  # blank with blank
    assert int(out["global_step"]) == 7 and out["layer_1/weights/Adam"][0, 0] == 20.0
    same = interpolate(fine, source, 0.0, columns)
    assert all(np.array_equal(same[n], fine[n]) for n in fine)
    with pytest.raises(ValueError, match=r"interpolation weight 1.5: must be in \[0, 1\]"):
        interpolate(fine, source, 1.5, columns)
    with pytest.raises(ValueError, match="4 classes, but 3 output columns"):
        interpolate(fine, source, 0.5, columns[:3])
