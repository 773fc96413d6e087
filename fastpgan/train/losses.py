"""GAN losses: ProGAN's WGAN-GP and StyleGAN's non-saturating logistic loss with R1.

Each returns the discriminator's loss (penalty included) and the generator's for a pair
of score functions, so mixed precision and the networks stay with the caller. Statistics
come back as 0-d tensors, so the caller reads them all with one device synchronization.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("wgan-gp", "logistic-r1")


def wgan_gp_d(D: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, *,
              gp_lambda: float = 10.0, drift: float = 1e-3,
              mix: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """WGAN-GP critic loss (Gulrajani et al. 2017) with ProGAN's drift term.

    D(fake) - D(real) + lambda * (||grad D(x_hat)|| - 1)^2 + drift * D(real)^2, x_hat a
    random interpolate of real and fake (Karras et al. 2017, appendix A.1: lambda 10,
    drift 0.001). ``mix``: the (N,) interpolation weights (uniform random if None).
    """
    real_scores, fake_scores = D(real), D(fake)
    if mix is None:
        mix = torch.rand(real.shape[0], device=real.device)
    mix = mix.to(real.device, real.dtype).view(-1, 1, 1, 1)
    # under autocast the generator's images are bfloat16/float16 and the reals float32
    x_hat = torch.lerp(real.detach(), fake.detach().to(real.dtype), mix).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).float().sum(), x_hat, create_graph=True)
    penalty = (grad.float().flatten(1).norm(dim=1) - 1).square()
    loss = (fake_scores.float() - real_scores.float() + gp_lambda * penalty[:, None]
            + drift * real_scores.float().square()).mean()
    return loss, {"d_real": real_scores.detach().float().mean(),
                  "d_fake": fake_scores.detach().float().mean(), "gp": penalty.detach().mean()}


def wgan_g(fake_scores: Tensor) -> Tensor:
    """The generator's WGAN loss: -D(G(z))."""
    return -fake_scores.float().mean()


def logistic_r1_d(D: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, *,
                  r1_gamma: float = 10.0, mix: Tensor | None = None,
                  ) -> tuple[Tensor, dict[str, float]]:
    """softplus(D(fake)) + softplus(-D(real)) + gamma/2 * ||grad D(real)||^2 (R1,
    Mescheder et al. 2018; StyleGAN's default, Karras et al. 2019, gamma 10). ``mix`` is
    accepted for a common signature and unused."""
    real = real.detach().requires_grad_(True)
    real_scores, fake_scores = D(real), D(fake)
    (grad,) = torch.autograd.grad(real_scores.float().sum(), real, create_graph=True)
    r1 = grad.float().flatten(1).square().sum(1)
    loss = (F.softplus(fake_scores.float()) + F.softplus(-real_scores.float())
            + 0.5 * r1_gamma * r1[:, None]).mean()
    return loss, {"d_real": real_scores.detach().float().mean(),
                  "d_fake": fake_scores.detach().float().mean(), "r1": r1.detach().mean()}


def logistic_g(fake_scores: Tensor) -> Tensor:
    """The non-saturating generator loss: softplus(-D(G(z)))."""
    return F.softplus(-fake_scores.float()).mean()


D_LOSS = {"wgan-gp": wgan_gp_d, "logistic-r1": logistic_r1_d}
G_LOSS = {"wgan-gp": wgan_g, "logistic-r1": logistic_g}
