"""A DCGAN training step, plain PyTorch and ``fastpgan.nn.fuse``d: kernels per step, host
time, and steps per second.

    python bench/dcgan_step.py [--batch 64] [--steps 20] [--out FILE]

The networks are examples/dcgan_plain.py's (transposed convolutions with BatchNorm + ReLU
in G, Conv + BatchNorm + LeakyReLU in D, 32x32 grayscale), trained with the
non-saturating loss and DCGAN's Adam: D on real and generated images, then G. Measured:

- on the meta device (shapes, no data: bench/step_overhead.py's harness), the ops one
  step dispatches, each a kernel launch on a GPU (ATen ops, views and allocations
  excluded, plus fastpgan's custom ops), and the host time per step;
- on this machine's device, steps per second (on the CPU the fused model's ops take their
  PyTorch references, as ``backend="auto"`` does for CPU tensors: the figure says what
  fuse costs or saves there, not what the kernels do on a GPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from step_overhead import META, KernelCount

from fastpgan.nn import fuse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import dcgan_plain

LATENT = 100


def networks(impl: str, device: torch.device,
             backend: str | None = None) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D, the same initial weights for either impl, fused for "fused" (with
    ``backend``; None: the process default, "auto")."""
    torch.manual_seed(0)
    g, d = dcgan_plain.Generator(LATENT), dcgan_plain.Discriminator()
    if impl == "fused":
        fuse(g, backend=backend), fuse(d, backend=backend)
    return g.to(device), d.to(device)


def trainer(g: torch.nn.Module, d: torch.nn.Module, batch: int, device: torch.device):
    """One training step of G and D as a function of nothing."""
    opt_g = torch.optim.Adam(g.parameters(), **dcgan_plain.ADAM, foreach=True)
    opt_d = torch.optim.Adam(d.parameters(), **dcgan_plain.ADAM, foreach=True)
    real = torch.randn(batch, 1, 32, 32, device=device)
    z = torch.randn(batch, LATENT, device=device)

    def step() -> None:
        fake = g(z)
        real_logits, fake_logits = d(real), d(fake.detach())
        loss_d = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits,
                                                       torch.zeros_like(fake_logits)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        logits = d(fake)
        loss_g = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return step


def on_meta(impl: str, batch: int, repeats: int) -> dict:
    """ATen and fastpgan ops dispatched per step, and the median host ms, on the meta
    device (every op's host side, no kernel)."""
    step = trainer(*networks(impl, META, "fused"), batch, META)
    step()  # the optimizers' state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(1e3 * (time.perf_counter() - start))
    count = KernelCount()
    with count:
        step()
    return {"impl": impl, "aten": count.counts[("step", "aten")],
            "fastpgan": count.counts[("step", "fastpgan")],
            "meta_host_ms": round(statistics.median(times), 2)}


def triton_launches(impl: str, batch: int) -> int:
    """Triton kernels one step launches: the fused ops run on CPU tensors with the
    interpreter's launch replaced by a counter (so their values are garbage, which a
    step's control flow never reads)."""
    if impl == "plain":
        return 0
    from triton.runtime.interpreter import InterpretedFunction

    launches = []
    run = InterpretedFunction.run
    cpu = torch.device("cpu")
    step = trainer(*networks(impl, cpu, "fused"), batch, cpu)
    try:
        InterpretedFunction.run = lambda self, *args, **kwargs: launches.append(self)
        step()
        launches.clear()
        step()
    finally:
        InterpretedFunction.run = run
    return len(launches)


def steps_per_second(impl: str, batch: int, steps: int, device: torch.device) -> float:
    """Training steps per second on ``device`` after two warm-up steps."""
    step = trainer(*networks(impl, device), batch, device)
    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> None:
    """Measures both impls and prints one JSON line each, then the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="where to write the JSON results")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for impl in ("plain", "fused"):
        row = on_meta(impl, args.batch, args.repeats)
        row["triton"] = triton_launches(impl, args.batch)
        row["launches"] = row["aten"] + row["triton"]
        row[f"{device.type}_steps_per_s"] = round(
            steps_per_second(impl, args.batch, args.steps, device), 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"DCGAN step, batch {args.batch}, 32x32: {name}, torch {torch.__version__}")
    print(f"{'impl':<7}{'kernels':>9}{'ATen':>6}{'Triton':>8}{'fastpgan ops':>14}"
          f"{'meta host ms':>14}{'steps/s':>9}")
    for row in rows:
        print(f"{row['impl']:<7}{row['launches']:>9}{row['aten']:>6}{row['triton']:>8}"
              f"{row['fastpgan']:>14}{row['meta_host_ms']:>14.2f}"
              f"{row[f'{device.type}_steps_per_s']:>9.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"device": name, "torch": torch.__version__,
                                              "batch": args.batch, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
