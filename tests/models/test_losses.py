"""The beta-VAE loss: closed-form KL, its agreement with torch.distributions, the weighting."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from kale_ext import ConfigError
from kale_ext.models import VAE, build_vae, kl_divergence, latent_stats, vae_loss


def test_kl_closed_form_on_known_inputs() -> None:
    assert float(kl_divergence(torch.zeros(1, 3), torch.zeros(1, 3))[0]) == 0.0
    # mean 1, variance 1 in one dimension: KL = mu^2 / 2
    assert float(kl_divergence(torch.tensor([[1.0]]), torch.tensor([[0.0]]))[0]) == 0.5
    # mean 0, variance e: KL = (e - 1 - 1) / 2
    got = float(kl_divergence(torch.tensor([[0.0]]), torch.tensor([[1.0]]))[0])
    assert got == pytest.approx((math.e - 2.0) / 2.0)


def test_kl_matches_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(7, 5, generator=gen), torch.randn(7, 5, generator=gen)
    expected = torch_kl(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(kl_divergence(mu, logvar), expected, atol=1e-5)


def test_beta_weights_reconstruction_against_kl() -> None:
    x = torch.zeros(4, 1, 2, 2)
    recon = torch.full_like(x, 0.5)  # squared error 0.25 per pixel
    mu, logvar = torch.ones(4, 3), torch.zeros(4, 3)  # KL = 1.5 per sample
    for beta in (0.0, 0.25, 1.0):
        mean = vae_loss(recon, x, mu, logvar, beta, reduction="mean")
        assert float(mean["mse"]) == pytest.approx(0.25)
        assert float(mean["kl"]) == pytest.approx(1.5)
        assert float(mean["loss"]) == pytest.approx((1 - beta) * 0.25 + beta * 1.5)
        summed = vae_loss(recon, x, mu, logvar, beta)  # summed over the 4 pixels
        assert float(summed["loss"]) == pytest.approx((1 - beta) * 1.0 + beta * 1.5)
    plain = vae_loss(recon, x)
    assert float(plain["kl"]) == 0.0 and float(plain["loss"]) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="beta"):
        vae_loss(recon, x, mu, logvar, beta=1.5)


def test_vae_gradient_flows_through_the_sampled_code() -> None:
    vae = build_vae("Encoder={FLAT,DENSE|8|RELU}Decoder={DENSE|4|SIGMOID,RESHAPE|1|2|2}",
                    (1, 2, 2), latent_dim=2)
    assert isinstance(vae, VAE)
    x = torch.rand(6, 1, 2, 2)
    recon, mu, logvar = vae.train()(x)
    vae_loss(recon, x, mu, logvar, 0.5)["loss"].backward()
    assert vae.logvar.weight.grad is not None and float(vae.logvar.weight.grad.abs().sum()) > 0
    stats = latent_stats(vae, x)
    assert set(stats) == {"latent_mean", "latent_mean_abs", "latent_var"}
    assert stats["latent_var"] > 0
