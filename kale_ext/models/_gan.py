"""A DCGAN-style GAN for calorimeter showers, with physics checks of what it generates.

The generator is trained with the non-saturating loss (it maximises log D(G(z))). After
every epoch the total-energy distribution of generated showers is compared with held-out
real ones by the two-sample Kolmogorov-Smirnov statistic, and the mean shower widths
are compared too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kale_ext._errors import ConfigError
from kale_ext.models import _loop
from kale_ext.models._builder import GANPair, build_model


def energy_ks(real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
    """KS statistic and p-value of the total energy per shower, real vs generated."""
    from scipy.stats import ks_2samp

    result = ks_2samp(real.flatten(1).sum(1).numpy(), fake.flatten(1).sum(1).numpy())
    return float(result.statistic), float(result.pvalue)


def shower_width(x: torch.Tensor) -> torch.Tensor:
    """Energy-weighted RMS distance from the shower's centroid, in cells, per shower."""
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    e = x.reshape(n, h, w).clamp(min=0)
    total = e.sum((1, 2)).clamp(min=1e-9)
    rows = torch.arange(h, dtype=e.dtype).view(1, h, 1)
    cols = torch.arange(w, dtype=e.dtype).view(1, 1, w)
    cy = (e * rows).sum((1, 2)) / total
    cx = (e * cols).sum((1, 2)) / total
    r2 = (rows - cy.view(n, 1, 1)) ** 2 + (cols - cx.view(n, 1, 1)) ** 2
    return ((e * r2).sum((1, 2)) / total).sqrt()


def default_layout(size: int, latent_dim: int) -> str:
    """Lay out a DCGAN pair for ``size`` x ``size`` showers (``size`` divisible by 4)."""
    q = size // 4
    return (f"DENSE|{32 * q * q}|RELU,RESHAPE|32|{q}|{q},BNORM,DECONV|16|4|4|2|2|1|1|RELU,"
            f"BNORM,DECONV|1|4|4|2|2|1|1|RELU"
            f"##CONV|16|4|4|2|2|1|1|LEAKYRELU,CONV|32|4|4|2|2|1|1|LEAKYRELU,FLAT,"
            f"DENSE|1|LINEAR")


def train_gan(config: dict[str, Any]) -> dict[str, float]:
    """Train a GAN on :func:`kale_ext.models.calo_showers` as a trial, reporting every epoch.

    Config keys (all optional): ``layout`` (``"generator##discriminator"``; the
    generator reads ``(latent_dim,)`` and must produce (1, size, size)), ``size`` (16,
    divisible by 4 for the default layout), ``n`` (2048 training showers), ``latent_dim``
    (16), ``epochs`` (5), ``batch_size`` (64), ``lr`` (1e-3; ``g_lr``/``d_lr`` override
    it per network), ``seed`` (0), ``device`` ("cpu"; "cuda" or "auto"),
    ``energy_scale`` (10 GeV: cells are divided by it).

    Reports ``d_loss, g_loss, loss`` (= g_loss), ``ks`` and ``ks_pvalue`` (total energy,
    generated vs held-out real), ``energy_real, energy_fake`` (mean total energies in
    GeV) and ``width_real, width_fake`` (mean shower widths in cells); returns the last
    epoch's. Checkpoints every epoch and resumes from the trial's checkpoint.
    """
    from kale_ext.models._physics import calo_showers

    generator = _loop.setup(config)
    size = int(config.get("size", 16))
    latent = int(config.get("latent_dim", 16))
    scale = float(config.get("energy_scale", 10.0))
    n = int(config.get("n", 2048))
    x, _ = calo_showers(n + max(n // 4, 64), size=size, seed=int(config.get("data_seed", 0)))
    x_train, x_val = x[:n] / scale, x[n:]
    layout = str(config.get("layout", default_layout(size, latent)))
    gan = build_model(layout, (latent,))
    if not isinstance(gan, GANPair):
        raise ConfigError(f"a GAN layout must be 'generator##discriminator', got {layout!r}")
    shape = gan.generator(torch.zeros(2, latent)).shape[1:]
    if tuple(shape) != tuple(x_train.shape[1:]):
        raise ConfigError(f"the generator makes {tuple(shape)} showers but the data are "
                          f"{tuple(x_train.shape[1:])}; change the layout or config['size']")
    dev = _loop.device(config)
    gan.to(dev)
    x_train = x_train.to(dev)
    betas = (0.5, 0.999)  # the DCGAN setting: less momentum keeps the two players stable
    lr = float(config.get("lr", 1e-3))
    g_opt = _loop.optimizer(gan.generator.parameters(), config, "g_", lr=lr, betas=betas)
    d_opt = _loop.optimizer(gan.discriminator.parameters(), config, "d_", lr=lr, betas=betas)
    modules = {"gan": gan, "g_opt": g_opt, "d_opt": d_opt}
    start = _loop.resume(modules, generator)
    bce = nn.functional.binary_cross_entropy_with_logits
    metrics: dict[str, float] = {}
    for epoch in range(start, int(config.get("epochs", 5))):
        gan.train()
        sums, count = {"d_loss": 0.0, "g_loss": 0.0}, 0
        for idx in _loop.batches(n, int(config.get("batch_size", 64)), generator):
            real = x_train[idx]
            fake = gan.generator(torch.randn(len(idx), latent, generator=generator).to(dev))
            d_real, d_fake = gan.discriminator(real), gan.discriminator(fake.detach())
            d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
            # non-saturating generator loss: -log D(G(z)) rather than log(1 - D(G(z)))
            d_gen = gan.discriminator(fake)
            g_loss = bce(d_gen, torch.ones_like(d_gen))
            g_opt.zero_grad()
            g_loss.backward()
            g_opt.step()
            sums["d_loss"] += float(d_loss.detach()) * len(idx)
            sums["g_loss"] += float(g_loss.detach()) * len(idx)
            count += len(idx)
        metrics = {key: value / count for key, value in sums.items()}
        metrics["loss"] = metrics["g_loss"]
        gan.eval()
        with torch.no_grad():
            fake = gan.sample(len(x_val), generator).cpu() * scale
        metrics["ks"], metrics["ks_pvalue"] = energy_ks(x_val, fake)
        metrics["energy_real"] = float(x_val.flatten(1).sum(1).mean())
        metrics["energy_fake"] = float(fake.flatten(1).sum(1).mean())
        metrics["width_real"] = float(shower_width(x_val).mean())
        metrics["width_fake"] = float(shower_width(fake).mean())
        _loop.checkpoint(modules, epoch, generator)
        _loop.report(epoch, metrics)
    return metrics
