"""A run's objective as objects that own their phases, as NVlabs' ``training/loss.py`` does.

:class:`Objective` is the whole of it, the one thing the trainer asks: which phases a
step runs (:meth:`Objective.phases`), each phase's loss terms (:meth:`Objective.terms`),
the Adam settings their lazy intervals imply and the state to checkpoint. It joins a GAN
loss (:class:`WGANGP`, :class:`LogisticR1`: the discriminator's terms and penalty, the
generator's term) and an optional regularizer of the generator
(:class:`PathLengthPenalty`, or anything with :class:`GeneratorPenalty`'s methods); a new
regularizer, or something every discriminator call must pass through (the augmentation:
ADA or DiffAugment, :mod:`fastpgan.train.augment`), is a change here.

A training step runs the discriminator's phases, then the generator's. With
``reg_interval`` K = 1 the discriminator has one phase, "D": main loss and penalty in one
backward and one optimizer step. With K > 1 (lazy regularization, Karras et al. 2020,
appendix B) it has "Dmain" every minibatch and, every K-th minibatch, "Dreg": the
penalty alone, weighted by K, with its own optimizer step; Adam's lr and betas are then
scaled by K / (K + 1) (``adam``), as the paper does, so the optimizer sees the same
momentum per image. The generator has one phase, "G", or with StyleGAN2's path length
regularization (``PathLengthPenalty``, every K_G minibatches) "Gmain" and "Greg" alike.

A phase's terms come back with their statistics as 0-d tensors: mixed precision,
micro-batches and reading the statistics (one device synchronization every few steps)
stay with the trainer. A new GAN loss is one class here and one entry in ``LOSSES``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from fastpgan.train.augment import Augmentation

Critic = Callable[[Tensor], Tensor]
"""The discriminator at the step's resolution and alpha, for images of one kind (reals or
fakes, with their labels if any): images (N, C, r, r) -> scores (N, 1)."""
LabelledCritic = Callable[[Tensor, Tensor | None], Tensor]
"""The discriminator at the step's resolution and alpha: images (N, C, r, r) and one-hot
labels (N, K) or None -> (N, 1) scores, or (N, 1 + K): scores and an auxiliary
classifier's label logits (ProGAN's conditional discriminator)."""


@dataclass(frozen=True)
class LossPhase:
    """One of a network's phases in a step: whether it has the main loss terms, and the
    factor on its penalty (0: none; K in a lazy "Dreg" or "Greg" phase)."""

    name: str
    main: bool
    penalty_gain: float

    @property
    def net(self) -> str:
        """The network the phase trains: "D" or "G"."""
        return self.name[0]


def lazy_phases(net: str, reg_interval: int, step: int) -> list[LossPhase]:
    """``net``'s phases ("D" or "G") at minibatch ``step`` (0, 1, ...) of a run: one with
    both terms for K = 1; else "<net>main" always and "<net>reg", weighted K, every K-th."""
    if reg_interval == 1:
        return [LossPhase(net, True, 1.0)]
    phases = [LossPhase(f"{net}main", True, 0.0)]
    if step % reg_interval == 0:
        phases.append(LossPhase(f"{net}reg", False, float(reg_interval)))
    return phases


def lazy_adam(reg_interval: int, lr: float,
              betas: tuple[float, float]) -> tuple[float, tuple[float, float]]:
    """Adam's lr and betas under lazy regularization every K minibatches: with
    c = K / (K + 1), lr * c and beta ** c (unchanged for K = 1)."""
    if reg_interval == 1:
        return lr, betas
    c = reg_interval / (reg_interval + 1)
    return lr * c, (betas[0] ** c, betas[1] ** c)


@dataclass
class GANLoss:
    """An objective's weights (its fields) and phases; subclasses give the losses."""

    name: ClassVar[str]
    reg_interval: int

    def __post_init__(self) -> None:
        if self.reg_interval < 1:
            raise ValueError(f"--reg-interval must be >= 1, got {self.reg_interval}")
        for item in dataclasses.fields(self):
            if getattr(self, item.name) < 0:
                raise ValueError(f"--{item.name.replace('_', '-')} must be >= 0, got "
                                 f"{getattr(self, item.name)}")

    def d_phases(self, step: int) -> list[LossPhase]:
        """The discriminator's phases at minibatch ``step`` (0, 1, ...) of a run."""
        return lazy_phases("D", self.reg_interval, step)

    def adam(self, lr: float, betas: tuple[float, float]) -> tuple[float, tuple[float, float]]:
        """The discriminator's Adam lr and betas (:func:`lazy_adam`)."""
        return lazy_adam(self.reg_interval, lr, betas)

    def d_loss(self, phase: LossPhase, D_real: Critic, D_fake: Critic, real: Tensor,
               fake: Tensor, mix: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The discriminator's loss in ``phase`` and its statistics. ``D_real`` and
        ``D_fake`` score reals and fakes (each with its labels); ``fake`` is detached
        generator output; ``mix``, (N,) uniform weights, for losses that interpolate."""
        raise NotImplementedError

    def g_loss(self, fake_scores: Tensor) -> Tensor:
        """The generator's loss for D's scores of its images."""
        raise NotImplementedError


def main_stats(real_scores: Tensor, fake_scores: Tensor) -> dict[str, Tensor]:
    """The discriminator's mean scores, and r_t = E[sign(D(real))], ADA's overfitting
    heuristic (Karras et al. 2020, section 3: it rises towards 1 as D memorizes the reals)."""
    real_scores = real_scores.detach()
    return {"d_real": real_scores.mean(), "d_fake": fake_scores.detach().mean(),
            "real_sign": real_scores.sign().mean()}


@dataclass
class WGANGP(GANLoss):
    """WGAN-GP (Gulrajani et al. 2017) with ProGAN's drift term (Karras et al. 2017, A.1):
    D(fake) - D(real) + drift * D(real)^2, penalty gp_lambda * (||grad D(x_hat)|| - 1)^2
    at random interpolates x_hat of real and fake; the generator's loss is -D(G(z))."""

    name: ClassVar[str] = "wgan-gp"
    gp_lambda: float = 10.0
    drift: float = 1e-3
    reg_interval: int = 1

    def d_loss(self, phase: LossPhase, D_real: Critic, D_fake: Critic, real: Tensor,
               fake: Tensor, mix: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Main terms and/or the gradient penalty (interpolates scored with the reals'
        labels), as ``phase`` says."""
        loss, stats = real.new_zeros((), dtype=torch.float32), {}
        if phase.main:
            real_scores, fake_scores = D_real(real).float(), D_fake(fake).float()
            loss = (fake_scores - real_scores + self.drift * real_scores.square()).mean()
            stats = main_stats(real_scores, fake_scores)
        if phase.penalty_gain:
            weight = mix.to(real.device, real.dtype).view(-1, 1, 1, 1)
            # under autocast the generator's images are bfloat16/float16 and the reals float32
            x_hat = torch.lerp(real.detach(), fake.detach().to(real.dtype), weight)
            x_hat.requires_grad_(True)
            (grad,) = torch.autograd.grad(D_real(x_hat).float().sum(), x_hat,
                                          create_graph=True)
            penalty = (grad.float().flatten(1).norm(dim=1) - 1).square()
            loss = loss + self.gp_lambda * phase.penalty_gain * penalty.mean()
            stats["gp"] = penalty.detach().mean()
        return loss, stats

    def g_loss(self, fake_scores: Tensor) -> Tensor:
        """-D(G(z))."""
        return -fake_scores.float().mean()


@dataclass
class LogisticR1(GANLoss):
    """The non-saturating logistic loss with the R1 penalty (Mescheder et al. 2018;
    StyleGAN's, Karras et al. 2019): softplus(D(fake)) + softplus(-D(real)), penalty
    r1_gamma / 2 * ||grad D(real)||^2; the generator's loss is softplus(-D(G(z)))."""

    name: ClassVar[str] = "logistic-r1"
    r1_gamma: float = 10.0
    reg_interval: int = 16

    def d_loss(self, phase: LossPhase, D_real: Critic, D_fake: Critic, real: Tensor,
               fake: Tensor, mix: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Main terms and/or R1, as ``phase`` says (``mix`` is unused)."""
        loss, stats = real.new_zeros((), dtype=torch.float32), {}
        if phase.penalty_gain:
            real = real.detach().requires_grad_(True)
        real_scores = D_real(real).float()
        if phase.main:
            fake_scores = D_fake(fake).float()
            loss = (F.softplus(fake_scores) + F.softplus(-real_scores)).mean()
            stats = main_stats(real_scores, fake_scores)
        if phase.penalty_gain:
            (grad,) = torch.autograd.grad(real_scores.sum(), real, create_graph=True)
            r1 = grad.float().flatten(1).square().sum(1)
            loss = loss + 0.5 * self.r1_gamma * phase.penalty_gain * r1.mean()
            stats["r1"] = r1.detach().mean()
        return loss, stats

    def g_loss(self, fake_scores: Tensor) -> Tensor:
        """softplus(-D(G(z)))."""
        return F.softplus(-fake_scores.float()).mean()


class StyleSynthesis(Protocol):
    """A generator the path length penalty can differentiate: styles, then images."""

    def ws(self, z: Tensor, c: Tensor | None = None) -> Tensor: ...

    def synthesis(self, ws: Tensor) -> Tensor: ...


@dataclass
class PathLengthPenalty:
    """StyleGAN2's path length regularization (Karras et al. 2020, section 3.2, as
    NVlabs' ``StyleGAN2Loss`` computes it): with styles w, images g(w) of H x W pixels and
    y ~ N(0, I) / sqrt(H W), the length l = sqrt(mean over the style layers of
    ||(J_w^T y)_layer||^2) is pulled to its running mean a by weight * (l - a)^2, on
    ``batch_shrink`` times fewer samples than the minibatch, every ``reg_interval``
    minibatches weighted by it (config F: 2, 4, 2, a's decay 0.01).

    ``mean`` is a: the run's state (checkpointed), updated in place on the device.
    """

    weight: float = 2.0
    reg_interval: int = 4
    decay: float = 0.01
    batch_shrink: int = 2
    mean: Tensor = field(default_factory=lambda: torch.zeros(()))

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"--pl-weight must be > 0 for the penalty, got {self.weight}")
        if self.reg_interval < 1:
            raise ValueError(f"--pl-interval must be >= 1, got {self.reg_interval}")
        if not 0 < self.decay <= 1 or self.batch_shrink < 1:
            raise ValueError(f"the path length mean's decay must be in (0, 1] and its batch "
                             f"shrink >= 1, got {self.decay} and {self.batch_shrink}")

    def state_dict(self) -> dict[str, Tensor]:
        """The running mean, as checkpoints hold it."""
        return {"pl_mean": self.mean}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Takes a checkpoint's running mean (a run from before it had one keeps 0)."""
        if "pl_mean" in state:
            self.mean.copy_(state["pl_mean"])

    def to(self, device: torch.device) -> PathLengthPenalty:
        """Moves the running mean to ``device``, where the penalty updates it in place."""
        self.mean = self.mean.to(device)
        return self

    def batch(self, n: int) -> int:
        """The samples the penalty takes from a (micro-)batch of n."""
        return max(1, n // self.batch_shrink)

    def penalty(self, phase: LossPhase, G: StyleSynthesis, z: Tensor,
                generator: torch.Generator | None = None,
                labels: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """weight * penalty_gain * mean((l - a)^2) for latents z (already shrunk) [and
        their labels], and its statistics; moves a towards the lengths' mean (once a
        call)."""
        ws = G.ws(z, labels)
        images = G.synthesis(ws)
        noise = torch.randn(images.shape, generator=generator, device=images.device)
        noise /= math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images.float() * noise).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(2).mean(1).sqrt()
        # as NVlabs: the updated mean, not detached, in the penalty; its value kept
        mean = self.mean.lerp(lengths.mean(), self.decay)
        self.mean.copy_(mean.detach())
        penalty = (lengths - mean).square()
        loss = self.weight * phase.penalty_gain * penalty.mean()
        return loss, {"pl_penalty": penalty.detach().mean(), "pl_length": lengths.detach().mean()}


class GeneratorPenalty(Protocol):
    """A regularizer of the generator in a lazy phase of its own ("Greg" every
    ``reg_interval`` minibatches), with state the run checkpoints."""

    reg_interval: int

    def batch(self, n: int) -> int:
        """The latents it takes from a (micro-)batch of n."""
        ...

    def penalty(self, phase: LossPhase, G: StyleSynthesis, z: Tensor,
                generator: torch.Generator | None = None,
                labels: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Its loss in ``phase`` (weighted by the phase's penalty_gain) and statistics,
        for latents z and, for a conditional generator, their one-hot labels."""
        ...

    def state_dict(self) -> dict[str, Tensor]:
        """Its state, by names unique across the objective."""
        ...

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Takes its state from a checkpoint's objective state."""
        ...

    def to(self, device: torch.device) -> GeneratorPenalty:
        """Moves its state to ``device``."""
        ...


@dataclass
class PhaseInputs:
    """What a phase computes with, as the trainer calls the networks this step: a
    (micro-)batch of reals, the detached fakes and interpolation weights the
    discriminator's phases share, the critic and the generator at this step's resolution
    and alpha (``generate(n)``: n images and their one-hot labels, or None), fresh
    latents, the device's random generator, and for a conditional run the reals' and
    fakes' one-hot labels and fresh labels drawn as the data's (``labels(n)``)."""

    real: Tensor
    fake: Tensor | None  # the discriminator's phases only
    mix: Tensor | None
    critic: LabelledCritic
    generate: Callable[[int], tuple[Tensor, Tensor | None]]
    latents: Callable[[int], Tensor]
    G: StyleSynthesis
    rng: torch.Generator | None = None
    real_labels: Tensor | None = None
    fake_labels: Tensor | None = None
    labels: Callable[[int], Tensor | None] = lambda n: None


Term = Callable[[], tuple[Tensor, dict[str, Tensor]]]
"""One loss term of a phase and its statistics, computed when called; each term is one
backward pass (the generator's main term is freed before its penalty is computed)."""

G_MAIN_ONLY = (LossPhase("G", True, 0.0),)
"""The generator's phases without a regularizer of its own."""


@dataclass
class Objective:
    """A run's whole objective: the GAN loss, an optional regularizer of the generator,
    an optional augmentation of every image the discriminator sees, and for a
    discriminator with an auxiliary classifier (conditional ProGAN) its label loss,
    weighted by ``label_weight`` (the official code's cond_weight, 1), on reals and fakes
    for D and on fakes for G (see the module docstring)."""

    loss: GANLoss
    g_penalty: GeneratorPenalty | None = None
    augment: Augmentation | None = None
    label_weight: float = 1.0

    def phases(self, step: int) -> tuple[tuple[LossPhase, ...], tuple[LossPhase, ...]]:
        """(the discriminator's, the generator's) phases at minibatch ``step`` (0, 1, ...)."""
        g_phases = (tuple(lazy_phases("G", self.g_penalty.reg_interval, step))
                    if self.g_penalty else G_MAIN_ONLY)
        return tuple(self.loss.d_phases(step)), g_phases

    def adam(self, net: str, lr: float,
             betas: tuple[float, float]) -> tuple[float, tuple[float, float]]:
        """Adam's lr and betas for ``net`` ("D" or "G"), scaled for its lazy interval."""
        interval = self.loss.reg_interval if net == "D" else (
            self.g_penalty.reg_interval if self.g_penalty else 1)
        return lazy_adam(interval, lr, betas)

    def terms(self, phase: LossPhase, inputs: PhaseInputs) -> list[Term]:
        """The loss terms of ``phase`` on ``inputs``, in the order to backpropagate."""
        critic, augment = inputs.critic, self.augment

        def scoring(labels: Tensor | None, logits: dict | None, kind: str) -> Critic:
            """A critic of images of one kind, augmented if the run augments, keeping the
            first call's label logits (of an auxiliary classifier) in ``logits``."""
            def score(images: Tensor) -> Tensor:
                out = critic(images if augment is None else augment(images, inputs.rng),
                             labels)
                if out.shape[1] > 1 and logits is not None:
                    logits.setdefault(kind, (out[:, 1:], labels))
                return out[:, :1]
            return score

        if phase.net == "D":
            def discriminator() -> tuple[Tensor, dict[str, Tensor]]:
                logits: dict = {}
                loss, stats = self.loss.d_loss(
                    phase, scoring(inputs.real_labels, logits, "real"),
                    scoring(inputs.fake_labels, logits, "fake"), inputs.real, inputs.fake,
                    inputs.mix)
                if not phase.main:
                    return loss, stats
                if logits:  # the official code's label penalty on reals and fakes
                    label_loss = sum(_label_loss(*pair) for pair in logits.values())
                    loss = loss + self.label_weight * label_loss
                    stats["label_loss"] = label_loss.detach()
                if augment is not None:
                    augment.observe(stats["real_sign"])
                    stats.update(augment.stats())
                return loss, {**stats, "d_loss": loss}
            return [discriminator]
        n, terms = len(inputs.real), []
        if phase.main:
            def generator() -> tuple[Tensor, dict[str, Tensor]]:
                images, labels = inputs.generate(n)
                logits: dict = {}
                loss = self.loss.g_loss(scoring(labels, logits, "fake")(images))
                if logits:
                    loss = loss + self.label_weight * _label_loss(*logits["fake"])
                return loss, {"g_loss": loss}
            terms.append(generator)
        if phase.penalty_gain:
            penalty = self.g_penalty

            def regularizer() -> tuple[Tensor, dict[str, Tensor]]:
                k = penalty.batch(n)
                return penalty.penalty(phase, inputs.G, inputs.latents(k), inputs.rng,
                                       inputs.labels(k))
            terms.append(regularizer)
        return terms

    def end_step(self, step: int, images: int) -> None:
        """After minibatch ``step`` (0, 1, ... in its phase) of ``images`` images in all
        processes: the augmentation adapts its p (ADA)."""
        if self.augment is not None:
            self.augment.adjust(step, images)

    def _parts(self) -> list[GeneratorPenalty | Augmentation]:
        return [part for part in (self.g_penalty, self.augment) if part is not None]

    def state_dict(self) -> dict[str, Tensor]:
        """The objective's state (the regularizer's and the augmentation's), as
        checkpoints hold it."""
        return {k: v for part in self._parts() for k, v in part.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Takes a checkpoint's objective state."""
        for part in self._parts():
            part.load_state_dict(state)

    def to(self, device: torch.device) -> Objective:
        """Moves its state to ``device``."""
        if self.g_penalty:
            self.g_penalty = self.g_penalty.to(device)
        if self.augment:
            self.augment = self.augment.to(device)
        return self


def _label_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """The softmax cross-entropy of label logits against one-hot labels, the mean over
    the batch."""
    return F.cross_entropy(logits.float(), labels.argmax(dim=1))


LOSSES: dict[str, type[GANLoss]] = {cls.name: cls for cls in (WGANGP, LogisticR1)}
"""The objectives by their --loss name."""


def build_loss(name: str, **weights: float | int | None) -> GANLoss:
    """The objective ``name`` with the given weights (None: the objective's default).

    Raises ValueError for an unknown name, or for a weight the objective does not have
    (e.g. --r1-gamma with wgan-gp), naming the objective that has it.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    cls = LOSSES[name]
    for key, value in weights.items():
        if value is not None and key not in _weights_of(cls):
            owners = [n for n, c in LOSSES.items() if key in _weights_of(c)]
            if not owners:
                raise TypeError(f"build_loss: no loss has a weight {key!r}")
            raise ValueError(f"--{key.replace('_', '-')} is a weight of {owners[0]}, not of "
                             f"{name}; drop it or use --loss {owners[0]}")
    return cls(**{k: v for k, v in weights.items() if v is not None})


def _weights_of(cls: type[GANLoss]) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}
