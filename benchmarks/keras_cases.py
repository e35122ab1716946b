"""Benchmark cases A-F for the Keras backend, side by side with keras-lmu 0.9.

Used by ``benchmarks/run.py``: :func:`build` returns one model.fit train step (forward,
backward, Adam, MSE against fixed random targets) for a case and an implementation, and
:func:`build_stream` one streaming inference step.  Both implementations are built by the
same code: keras-lmu's classes are drop-in for lmu_keras's.  For keras-lmu the ``LMU`` layer
is used: it already takes its faster path (its parallel LMUFeedforward where it can, else
``RNN(LMUCell)``).

Cases (float32):

* A: memory_d=32, order=256, theta=784, 512 steps, batch 16, 32 inputs, no hidden cell,
  Dense(2) head on the last step.
* B: A with return_sequences=True and the head on every step.
* C: memory_d=1, order=256, theta=784, 784 steps, batch 100, 1 input, hidden Dense(212, tanh),
  Dense(10) head on the last step.
* D: C with a SimpleRNN(212) hidden cell and input_to_hidden.
* E: D with hidden_to_memory and memory_to_memory.
* F: C with trainable_theta (zoh).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["CASES", "IMPLS", "build", "build_stream"]

IMPLS: tuple[str, ...] = ("keras",) + (
    ("keras-lmu",) if importlib.util.find_spec("keras_lmu") is not None else ()
)


def _case(
    memory_d: int,
    steps: int,
    batch: int,
    inputs: int,
    hidden: str | None,
    head: int,
    **options: Any,
) -> dict[str, Any]:
    return dict(
        memory_d=memory_d,
        order=256,
        theta=784.0,
        steps=steps,
        batch=batch,
        inputs=inputs,
        hidden=hidden,
        head=head,
        options=options,
    )


#: case -> layer sizes, data sizes, hidden cell kind, head units and LMU options
CASES: dict[str, dict[str, Any]] = {
    "A": _case(32, 512, 16, 32, None, 2),
    "B": _case(32, 512, 16, 32, None, 2, return_sequences=True),
    "C": _case(1, 784, 100, 1, "dense", 10),
    "D": _case(1, 784, 100, 1, "simple_rnn", 10, input_to_hidden=True),
    "E": _case(
        1,
        784,
        100,
        1,
        "simple_rnn",
        10,
        input_to_hidden=True,
        hidden_to_memory=True,
        memory_to_memory=True,
    ),
    "F": _case(1, 784, 100, 1, "dense", 10, trainable_theta=True),
}


def _module(impl: str) -> Any:
    if impl == "keras":
        import lmu_keras

        return lmu_keras
    if impl == "keras-lmu":
        import keras_lmu

        return keras_lmu
    raise ValueError(f"impl must be one of {IMPLS} (got {impl!r})")


def _hidden(kind: str | None) -> Any:
    import keras

    if kind is None:
        return None
    if kind == "dense":
        return keras.layers.Dense(212, activation="tanh")
    return keras.layers.SimpleRNNCell(212)


def _model(case: str, impl: str) -> tuple[Any, Any]:
    import keras

    spec = CASES[case]
    mod = _module(impl)
    inp = keras.Input((spec["steps"], spec["inputs"]), batch_size=spec["batch"])
    layer = mod.LMU(
        spec["memory_d"],
        spec["order"],
        spec["theta"],
        _hidden(spec["hidden"]),
        **spec["options"],
    )
    out = keras.layers.Dense(spec["head"])(layer(inp))
    return keras.Model(inp, out), layer


def build(case: str, impl: str, device: str = "cpu") -> tuple[Callable[[], None], str]:
    """One train step of ``case`` with ``impl``, on fixed random data.

    Parameters
    ----------
    case : {"A", "B", "C", "D", "E", "F"}
    impl : {"keras", "keras-lmu"}
    device : str
        "cpu" (or e.g. "gpu" where TensorFlow/JAX see one): the device the model runs on.

    Returns
    -------
    train_step : callable
        Runs ``model.train_on_batch`` once (forward, backward, Adam).
    mode : str
        The execution mode lmu_keras chose ("-" for keras-lmu).
    """
    import keras

    if case not in CASES:
        raise ValueError(f"case must be one of {tuple(CASES)} (got {case!r})")
    spec = CASES[case]
    keras.utils.set_random_seed(0)
    model, layer = _model(case, impl)
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(spec["batch"], spec["steps"], spec["inputs"])).astype("float32")
    out_shape = tuple(d if d is not None else spec["batch"] for d in model.output.shape)
    y = rng.normal(size=out_shape).astype("float32")

    def train_step() -> None:
        model.train_on_batch(x, y)

    train_step()  # build and compile the step function
    mode = getattr(layer, "mode", None) if impl == "keras" else None
    return train_step, mode or "-"


def build_stream(impl: str) -> Callable[[], None]:
    """One streaming inference step (batch 1) of case D's model, state carried across calls.

    The model is ``LMUCell(1, 256, 784, SimpleRNNCell(212), input_to_hidden=True)`` and a
    Dense(10) head, stepped with a compiled function (tf.function on TensorFlow, jax.jit on
    JAX, eager on PyTorch).
    """
    import keras

    mod = _module(impl)
    keras.utils.set_random_seed(0)
    cell = mod.LMUCell(1, 256, 784.0, keras.layers.SimpleRNNCell(212), input_to_hidden=True)
    head = keras.layers.Dense(10)
    cell.build((1, 1))
    head.build((1, 212))
    x = keras.ops.convert_to_tensor(np.ones((1, 1), "float32"))

    def step(x_t: Any, states: list[Any]) -> tuple[Any, list[Any]]:
        out, new = cell(x_t, states)
        return head(out), list(new)

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        step = tf.function(step)
    elif backend == "jax":
        import jax

        step = jax.jit(step)
    state = {"s": [keras.ops.zeros((1, n)) for n in cell.state_size]}

    def stream_step() -> None:
        out, state["s"] = step(x, state["s"])
        keras.ops.convert_to_numpy(out)  # wait for asynchronous dispatch (JAX)

    stream_step()
    return stream_step
