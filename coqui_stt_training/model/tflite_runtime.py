"""A Coqui `.tflite` export run by LiteRT (the `ai-edge-litert` wheel, TensorFlow Lite's own runtime), as Coqui's
native client runs it: TFLite's reference kernels without delegates, so an int8 export's hybrid kernels
(activations quantised per row at run time) give libstt's probabilities, not just close ones (XNNPACK's int8
path rounds differently: 4e-3 apart on the fixtures). One call takes up to the graph's n_steps windows, the
rest of the batch zero, and the LSTM state; only the acoustic model's part of the graph runs (the features
are computed in numpy, model/features.py).
"""

from __future__ import annotations

import numpy as np


class TfliteDeepSpeech:
    def __init__(self, path: str, threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            raise ImportError("running a .tflite model needs LiteRT: pip install 'coqui-stt-torch[client]'") from None
        self.interpreter = Interpreter(
            model_path=path,
            num_threads=threads,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        self.interpreter.allocate_tensors()
        self.inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
        self.outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        self.batch_shape = tuple(self.inputs["input_node"]["shape"])  # [1, n_steps, 19, 26]
        self.n_steps = self.batch_shape[1]
        self.n_hidden = int(self.inputs["previous_state_c"]["shape"][-1])
        self.n_classes = int(self.outputs["logits"]["shape"][-1])

    def zero_state(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((1, self.n_hidden), np.float32), np.zeros((1, self.n_hidden), np.float32)

    def step(
        self, windows: np.ndarray, state: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """windows [steps <= n_steps, 19, 26] and (c, h) -> probabilities [steps, classes] and the new (c, h)."""
        batch = np.zeros(self.batch_shape, np.float32)
        batch[0, : len(windows)] = windows
        run = self.interpreter
        run.set_tensor(self.inputs["input_node"]["index"], batch)
        run.set_tensor(self.inputs["previous_state_c"]["index"], state[0])
        run.set_tensor(self.inputs["previous_state_h"]["index"], state[1])
        run.invoke()
        probs = run.get_tensor(self.outputs["logits"]["index"]).reshape(self.n_steps, self.n_classes)
        new_c = run.get_tensor(self.outputs["new_state_c"]["index"])
        new_h = run.get_tensor(self.outputs["new_state_h"]["index"])
        return probs[: len(windows)].copy(), (new_c, new_h)
