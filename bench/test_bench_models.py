"""ProGAN G + D training step (forward and backward of both) at each resolution of the
paper's schedule: every layer on the fused ops ("fused") vs the same networks on the
plain-PyTorch reference ops ("eager"), bfloat16, channels_last, stable phase (alpha=1).

Batch per resolution is the paper's (Karras et al. 2017, appendix A.1): 16 up to 128^2,
then 14, 6 and 3. The time and peak memory are the figures to read.
"""

from __future__ import annotations

import pytest
import torch
from benchutil import CUDA, DEVICE, benchmark_step

from fastpgan.models import ProGANDiscriminator, ProGANGenerator

PAPER_BATCH = {4: 16, 8: 16, 16: 16, 32: 16, 64: 16, 128: 16, 256: 14, 512: 6, 1024: 3}
RESOLUTIONS = list(PAPER_BATCH) if CUDA else [4, 8]
CONFIG = {} if CUDA else dict(resolution=8, fmap_base=32, fmap_max=8)
IMPLS = ("fused", "eager")


def step_fn(impl: str, resolution: int):
    """(step, bytes): G(z) -> D -> the sum of scores, backward into both networks."""
    dtype = torch.bfloat16 if CUDA else torch.float32
    backend = "fused" if impl == "fused" else "reference"
    G = ProGANGenerator(**CONFIG, backend=backend)
    D = ProGANDiscriminator(**CONFIG, backend=backend)
    G, D = (net.to(DEVICE, dtype).to(memory_format=torch.channels_last) for net in (G, D))
    z = torch.randn(PAPER_BATCH[resolution], G.latent_dim, device=DEVICE, dtype=dtype)
    params = [*G.parameters(), *D.parameters()]

    def step():
        scores = D(G(z, resolution))
        return torch.autograd.grad(scores.sum(), params, allow_unused=True)

    image_bytes = z.shape[0] * 3 * resolution * resolution * z.element_size()
    return step, image_bytes


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_generator_discriminator_step(benchmark, resolution, impl):
    benchmark_step(benchmark, step_fn(impl, resolution), op="progan_g_d_step",
                   shape=(PAPER_BATCH[resolution], 3, resolution, resolution),
                   layout="channels_last", impl=impl)
