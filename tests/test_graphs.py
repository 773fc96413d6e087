"""StepGraphs' bookkeeping, when graphs are wanted, and the CPU emulator the trainer's
replay test relies on (tests/test_train_performance.py checks replayed training against eager)."""

import warnings

import pytest
import torch
from helpers import GraphEmulator

from fastpgan.train.graphs import StepGraphs, graphs_wanted, obstacle

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_a_baked_host_value_stays_baked_in_the_emulated_replay():
    # the negative control of the trainer's replay test: host code does not run again
    total, step_size, calls = torch.zeros(()), torch.ones(()), []

    def step(batch):
        calls.append(1)
        total.add_(batch.sum() * step_size + float(len(calls)))  # len(calls): baked as 1
        return "done"

    graphs = StepGraphs(GraphEmulator(), CPU, warmup=0)
    assert graphs.run("v", torch.full((2,), 3.0), step) == "done"
    assert total.item() == 6 + 1, "the capture left no trace; its replay ran the step once"
    step_size.fill_(10)  # device data the graph reads
    graphs.run("v", torch.full((2,), 5.0), step)
    assert total.item() == 7 + 100 + 1, "a new batch and step size, the old host value"
    assert len(calls) == 1 and (graphs.captures, graphs.replays) == (1, 2)


def test_the_emulator_refuses_a_host_read_as_a_capture_does():
    graphs = StepGraphs(GraphEmulator(), CPU, warmup=0)
    with pytest.warns(RuntimeWarning, match="reads a tensor's value on the host"):
        graphs.run("v", torch.ones(2), lambda batch: batch.sum().item())
    assert graphs.failure is not None


def test_each_variant_warms_up_then_is_captured_once_and_replayed():
    backend = GraphEmulator()
    graphs = StepGraphs(backend, CPU, warmup=2)
    seen = []

    def step(batch):
        seen.append(batch.clone())
        return batch.shape[0]

    for variant, n in [("a", 1), ("a", 1), ("b", 2), ("a", 1), ("a", 1), ("b", 2), ("b", 2),
                       ("b", 2)]:
        assert graphs.run(variant, torch.full((n,), float(len(seen))), step) == n
    # a: 2 eager, 1 capture + replay, 1 replay; b: 2 eager, 1 capture + replay, 1 replay
    assert (backend.captures, graphs.captures, graphs.replays) == (2, 2, 4)
    assert len(seen) == 6, "warm-ups and captures run the Python code, replays do not"
    graphs.reset()
    graphs.run("a", torch.ones(1), step)
    assert len(seen) == 7 and graphs.captures == 2, "after reset, the variant warms up again"


def test_a_failed_capture_warns_once_and_the_run_goes_on_eagerly():
    class Failing(GraphEmulator):
        def capture(self, step):
            raise RuntimeError("operation not permitted when stream is capturing")

    freed, results = [], []
    graphs = StepGraphs(Failing(), CPU, warmup=1, on_failure=lambda: freed.append(1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            results.append(graphs.run("v", torch.ones(3), lambda batch: batch.sum()))
    assert [str(w.message) for w in caught if w.category is RuntimeWarning] == [
        "fastpgan-train: capturing the training step in a CUDA graph failed (RuntimeError: "
        "operation not permitted when stream is capturing); the run continues without CUDA "
        "graphs"]
    assert freed == [1] and [r.item() for r in results] == [3, 3, 3, 3]
    assert "not permitted" in graphs.failure


@pytest.mark.parametrize("setting, reason", [
    (dict(device=CPU), "need a CUDA device and this run is on cpu"),
    (dict(precision="fp16"), "gradient scaler reads its overflow flag on the host"),
    (dict(world=2), "all-reduce between processes"),
    (dict(compile=True), "--compile"),
    (dict(checkpoint_activations=True), "--checkpoint-activations"),
])
def test_what_stands_in_the_way_of_graphs_is_named(setting, reason):
    run = dict(device=CUDA, precision="bf16", world=1, compile=False,
               checkpoint_activations=False)
    assert obstacle(**run) is None and graphs_wanted("auto", None)
    found = obstacle(**{**run, **setting})
    assert reason in found
    assert not graphs_wanted("auto", found) and not graphs_wanted("off", None)
    with pytest.raises(ValueError, match=f"--cuda-graphs on: .*{reason}"):
        graphs_wanted("on", found)
    with pytest.raises(ValueError, match="--cuda-graphs must be one of"):
        graphs_wanted("always", None)
