"""fastpgan.nn's conditioning layers against their definitions."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from fastpgan.nn import ConditioningAugmentation, LabelModulation


def test_conditioning_augmentation_draws_from_its_gaussian_and_its_kl_is_the_closed_form():
    layer = ConditioningAugmentation(12, 5)
    embedding = torch.randn(64, 12)
    c, mu, logvar = layer(embedding)
    assert c.shape == mu.shape == logvar.shape == (64, 5)
    assert not torch.equal(c, mu)  # drawn in training
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1).mean()
    assert torch.allclose(ConditioningAugmentation.kl_divergence(mu, logvar), expected,
                          atol=1e-6)
    c.sum().backward()  # the draw is reparameterized: its gradient reaches the layer
    assert layer.project.weight.grad.abs().sum() > 0
    layer.eval()
    c_eval, mu_eval, _ = layer(embedding)
    assert torch.equal(c_eval, mu_eval)


def test_conditioning_draws_spread_as_sigma():
    layer = ConditioningAugmentation(3, 2)
    with torch.no_grad():
        layer.project.weight.zero_()
        layer.project.bias.copy_(torch.tensor([1.0, -1.0, 0.0, 2 * torch.log(torch.tensor(3.0))]))
    c, _, _ = layer(torch.zeros(20000, 3))
    assert torch.allclose(c.mean(0), torch.tensor([1.0, -1.0]), atol=0.1)
    assert torch.allclose(c.std(0), torch.tensor([1.0, 3.0]), atol=0.1)


def test_label_modulation_is_the_identity_at_first_and_film_after():
    layer = LabelModulation(4, 6)
    x, labels = torch.randn(5, 6, 3, 2), torch.tensor([0, 3, 1, 3, 2])
    assert torch.equal(layer(x, labels), x)
    with torch.no_grad():
        layer.gamma.weight.normal_()
        layer.beta.weight.normal_()
    one_hot = torch.nn.functional.one_hot(labels, 4).float()
    gamma, beta = one_hot @ layer.gamma.weight, one_hot @ layer.beta.weight
    expected = x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
    assert torch.allclose(layer(x, labels), expected, atol=1e-6)
    layer(x, labels).sum().backward()
    assert layer.gamma.weight.grad[0].abs().sum() > 0 and layer.gamma.weight.grad[1].abs().sum() > 0


@pytest.mark.parametrize("x,labels,message", [
    (torch.randn(2, 5, 3), torch.tensor([0, 1]), "x must be \\(N, 6, ...\\)"),
    (torch.randn(2, 6, 3), torch.tensor([0.0, 1.0]), "labels must be 2 integers"),
    (torch.randn(2, 6, 3), torch.tensor([0, 4]), "labels must lie in \\[0, 4\\)"),
])
def test_label_modulation_refuses_bad_inputs_by_name(x, labels, message):
    with pytest.raises(ValueError, match=message):
        LabelModulation(4, 6)(x, labels)
