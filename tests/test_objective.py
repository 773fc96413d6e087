"""The training objective: the losses and their phases, lazy regularization, StyleGAN2's
path length penalty, a regularizer defined outside the trainer, and the EMA."""

import json
from dataclasses import dataclass, field

import pytest
import torch
from helpers import tiny

from fastpgan.runs.checkpoint import Checkpoint, latest_checkpoint
from fastpgan.train.ema import EMA
from fastpgan.train.loop import Trainer
from fastpgan.train.losses import (
    WGANGP,
    LogisticR1,
    LossPhase,
    Objective,
    PathLengthPenalty,
    build_loss,
)


def test_losses_and_their_phases_on_a_linear_critic():
    """D(x) = <w, x>: the input gradient is w everywhere, so every term is known."""
    w = torch.randn(1, 3, 4, 4)

    def critic(x):
        return (x * w).flatten(1).sum(1, keepdim=True)

    real, fake, mix = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4), torch.rand(5)
    sp = torch.nn.functional.softplus
    gp, r1 = (w.norm() - 1) ** 2, w.norm() ** 2
    wgan_main = (critic(fake) - critic(real) + 1e-3 * critic(real) ** 2).mean()
    logistic_main = (sp(critic(fake)) + sp(-critic(real))).mean()
    both, main_only = LossPhase("D", True, 1.0), LossPhase("Dmain", True, 0.0)
    cases = [  # (loss, phase, expected loss, statistic, its expected value)
        (WGANGP(), both, wgan_main + 10 * gp, "gp", gp),
        (WGANGP(gp_lambda=3.0, drift=0.0), LossPhase("Dreg", False, 4.0), 4 * 3 * gp, "gp", gp),
        (WGANGP(), main_only, wgan_main, "d_real", critic(real).mean()),
        (LogisticR1(), both, logistic_main + 5 * r1, "r1", r1),
        (LogisticR1(r1_gamma=2.0), LossPhase("Dreg", False, 16.0), 16 * r1, "r1", r1),
        (LogisticR1(), main_only, logistic_main, "d_fake", critic(fake).mean()),
    ]
    for loss, phase, expected, key, value in cases:
        got, stats = loss.d_loss(phase, critic, critic, real, fake, mix)
        assert torch.allclose(got, expected, rtol=1e-5), (loss, phase)
        assert torch.allclose(stats[key], value, rtol=1e-5), (loss, phase, key)
        assert ("gp" in stats or "r1" in stats) == bool(phase.penalty_gain)
    assert torch.allclose(LogisticR1().g_loss(critic(fake)), sp(-critic(fake)).mean())
    assert torch.allclose(WGANGP().g_loss(critic(fake)), -critic(fake).mean())


def test_lazy_regularization_phases_and_adam_follow_stylegan2():
    """Karras et al. 2020, appendix B: the penalty every K-th minibatch, Adam's lr and
    betas scaled by c = K / (K + 1)."""
    assert [p.name for p in WGANGP().d_phases(3)] == ["D"]
    lazy = LogisticR1()
    assert lazy.reg_interval == 16
    assert [[p.name for p in lazy.d_phases(step)] for step in (0, 1, 15, 16)] == [
        ["Dmain", "Dreg"], ["Dmain"], ["Dmain"], ["Dmain", "Dreg"]]
    lr, betas = lazy.adam(0.002, (0.0, 0.99))
    assert lr == pytest.approx(0.002 * 16 / 17)
    assert betas == (0.0, pytest.approx(0.99 ** (16 / 17)))
    assert WGANGP().adam(0.001, (0.0, 0.99)) == (0.001, (0.0, 0.99))
    with pytest.raises(ValueError, match="--r1-gamma is a weight of logistic-r1, not of "
                                         "wgan-gp"):
        build_loss("wgan-gp", r1_gamma=5.0)
    with pytest.raises(ValueError, match="--reg-interval must be >= 1"):
        build_loss("logistic-r1", reg_interval=0)
    assert build_loss("logistic-r1", r1_gamma=2.0, gp_lambda=None) == LogisticR1(r1_gamma=2.0)


class _LinearStyles(torch.nn.Module):
    """A generator whose Jacobian is a known matrix: ws = z M as 3 layers of 2, images =
    A ws."""

    def __init__(self):
        super().__init__()
        self.M = torch.nn.Parameter(torch.randn(2, 2, dtype=torch.float64))
        self.A = torch.nn.Parameter(torch.randn(1 * 2 * 3, 3 * 2, dtype=torch.float64))

    def ws(self, z, c=None):
        return z.view(-1, 3, 2) @ self.M

    def synthesis(self, ws):
        return (ws.flatten(1) @ self.A.T).view(-1, 1, 2, 3)


def test_path_length_penalty_is_nvlabs_formula_on_a_known_jacobian():
    """l = sqrt(mean over layers of ||(J^T y)_layer||^2), y ~ N(0, I) / sqrt(H W); with
    images = A w the vector J^T y is A^T y, written out here, not taken from autograd."""
    torch.manual_seed(0)
    G = _LinearStyles()
    z = torch.randn(4, 6, dtype=torch.float64)
    pl = PathLengthPenalty(weight=2.0, reg_interval=4, decay=0.01)
    pl.mean = torch.tensor(0.5)  # float32, as the trainer keeps it
    loss, stats = pl.penalty(LossPhase("Greg", False, 4.0), G, z, torch.Generator().manual_seed(3))
    y = torch.randn((4, 1, 2, 3), generator=torch.Generator().manual_seed(3)) / 6 ** 0.5
    jt_y = (y.double().flatten(1) @ G.A).view(4, 3, 2)
    lengths = jt_y.square().sum(2).mean(1).sqrt()
    mean = 0.5 + 0.01 * (lengths.mean() - 0.5)
    assert torch.allclose(stats["pl_length"].double(), lengths.mean(), rtol=1e-6)
    assert torch.allclose(pl.mean.double(), mean, rtol=1e-6)
    assert torch.allclose(loss.double(), 2.0 * 4.0 * ((lengths - mean) ** 2).mean(), rtol=1e-5)
    loss.backward()  # the penalty trains the generator's weights: second-order through J
    assert G.A.grad is not None and G.A.grad.abs().sum() > 0
    objective = Objective(LogisticR1(), pl)
    assert [[p.name for p in objective.phases(step)[1]] for step in (0, 1, 3, 4)] == [
        ["Gmain", "Greg"], ["Gmain"], ["Gmain"], ["Gmain", "Greg"]]
    lr, betas = objective.adam("G", 0.002, (0.0, 0.99))
    assert lr == pytest.approx(0.002 * 4 / 5) and betas[1] == pytest.approx(0.99 ** 0.8)
    assert pl.batch(8) == 4 and pl.batch(1) == 1
    with pytest.raises(ValueError, match="--pl-interval must be >= 1"):
        PathLengthPenalty(reg_interval=0)


@dataclass
class _ToyPenalty:
    """A regularizer the trainer has never heard of, defined here only: the mean square of
    the generator's images, every other minibatch, with a count of its calls as state."""

    reg_interval: int = 2
    calls: torch.Tensor = field(default_factory=lambda: torch.zeros(()))

    def batch(self, n):
        return n

    def penalty(self, phase, G, z, generator=None, labels=None):
        images = G.synthesis(G.ws(z))
        self.calls += 1
        loss = 0.1 * phase.penalty_gain * images.float().square().mean()
        return loss, {"toy": loss.detach()}

    def state_dict(self):
        return {"toy_calls": self.calls}

    def load_state_dict(self, state):
        self.calls.copy_(state["toy_calls"])

    def to(self, device):
        self.calls = self.calls.to(device)
        return self


def test_a_new_regularizer_is_a_loss_room_object_only(faces, tmp_path):
    """The trainer runs whatever phases the objective lists: a toy generator regularizer
    trains, logs its statistic, is checkpointed and resumed, and scales G's Adam."""
    trainer = Trainer(tiny(faces, tmp_path / "run", arch="stylegan2", loss="logistic-r1",
                           total_kimg=0.032))
    trainer.objective = Objective(trainer.objective.loss, _ToyPenalty())
    trainer.run(stop_at=16)
    assert float(trainer.objective.g_penalty.calls) == 2, "every other of 4 minibatches"
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * 2 / 3)
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text()
              .splitlines()]
    assert any("toy" in record for record in logged)
    checkpoint = Checkpoint.read(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert float(checkpoint.objective["toy_calls"]) == 2


def test_ema_warms_up_then_decays_at_the_set_rate():
    live = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(live, decay=0.999)
    with torch.no_grad():
        live.weight.fill_(1.0)
        ema.model.weight.fill_(0.0)
    ema.update(live)  # decay min(0.999, 1/10): 90 % of the way
    assert ema.model.weight.item() == pytest.approx(0.9)
    ema.updates = 10**6
    ema.update(live)
    assert ema.model.weight.item() == pytest.approx(0.9 + 0.1 * 0.001)


def test_ema_half_life_follows_nvlabs_with_its_ramp_up():
    live = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(live, half_life_kimg=10, rampup=0.05)
    with torch.no_grad():
        live.weight.fill_(1.0)
        ema.model.weight.fill_(0.0)
    ema.update(live, batch=32, shown=6400)  # half-life min(10000, 0.05 * 6400) = 320
    assert ema.model.weight.item() == pytest.approx(1 - 0.5 ** (32 / 320))
    assert ema.decay_at(32, 10**7) == pytest.approx(0.5 ** (32 / 10_000))
    assert EMA(live, half_life_kimg=10).decay_at(32, 0) == pytest.approx(0.5 ** (32 / 10_000))
    with pytest.raises(ValueError, match="must be > 0"):
        EMA(live, half_life_kimg=0)


@pytest.mark.parametrize("arch, block", [("progan", 0), ("stylegan", 1)])  # StyleGAN's 0: 4x4
def test_a_new_resolutions_layers_enter_the_average_at_their_current_weights(faces, tmp_path,
                                                                            arch, block):
    """At a resolution change the new layers' average is their weights of that moment (they
    are untouched until their fade-in, and the average of an unchanging weight is itself);
    the layers already trained keep their average. Then the new layers' average follows
    them at the ramped-up half-life, no longer equal. (The default ramp-up makes a run of
    a few dozen images ship its raw generator; 0.5 averages over them.)"""
    trainer = Trainer(tiny(faces, tmp_path / "run", arch=arch, ema_rampup=0.5))
    new = [name for name, _ in trainer.G.named_parameters()
           if name.startswith((f"blocks.{block}.", "to_rgb.1."))]  # 8x8's block and toRGB
    assert new
    trainer.run(stop_at=24)  # the end of the 4x4 phase: 8x8's fade-in begins
    live = dict(trainer.G.named_parameters())
    average = dict(trainer.ema.model.named_parameters())
    assert all(torch.equal(live[name], average[name]) for name in new)
    assert not all(torch.equal(live[name], average[name]) for name in live if name not in new)
    trainer.run(stop_at=32)
    assert not all(torch.equal(live[name], average[name]) for name in new)
