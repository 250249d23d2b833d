"""Synthetic calorimeter data with physically motivated structure (numpy only).

- :func:`jet_images`: whole-event calorimeter images on an (eta, phi) grid, signal vs
  background in the spirit of the ATLAS RPV-SUSY CNN search (arXiv:1711.03573):
  QCD-like background is a dijet (two broad, roughly back-to-back deposits, sometimes a
  soft third one) with a steeply falling pT spectrum; signal (gluino pairs decaying to
  many quarks) has more, harder jets with two- or three-prong substructure.
- :func:`calo_showers`: single-particle electromagnetic showers in a calorimeter
  layer: a core plus a halo around the impact point, with sampling fluctuations and an
  energy resolution, for generative models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ETA_MAX = 2.5


def _deposit(image: np.ndarray, eta: np.ndarray, phi: np.ndarray, e0: float, p0: float,
             energy: float, sigma: float) -> None:
    """Add a Gaussian deposit of ``energy`` GeV at (e0, p0), wrapping in phi."""
    dphi = (phi - p0 + np.pi) % (2 * np.pi) - np.pi
    kernel = np.exp(-((eta - e0) ** 2 + dphi**2) / (2 * sigma**2))
    total = kernel.sum()
    if total > 0:  # a deposit centred outside the acceptance can miss every cell
        image += energy * kernel / max(total, 1.0)


def _width(pt: float) -> float:
    """Give a jet's angular width, which shrinks with its pT (about 2 m / pT for a light jet)."""
    return float(np.clip(30.0 / pt, 0.1, 0.35))


def _jet(rng: np.random.Generator, pt: float, prongs: int, width: float,
         image: np.ndarray, eta: np.ndarray, phi: np.ndarray, axis: tuple[float, float]) -> None:
    # pT shared among the prongs like a hard splitting: one leading prong, softer others
    shares = rng.dirichlet(np.full(prongs, 2.0)) if prongs > 1 else np.ones(1)
    for share in shares:
        offset = rng.normal(0.0, 0.25, 2) if prongs > 1 else np.zeros(2)
        _deposit(image, eta, phi, axis[0] + offset[0], axis[1] + offset[1], pt * share, width)


def jet_images(n: int, size: int = 32, seed: int = 0,
               signal_fraction: float = 0.5) -> tuple[Any, Any]:
    """Calorimeter images of signal (multi-jet, RPV-like) and background (QCD dijet) events.

    Parameters
    ----------
    n
        Number of events.
    size
        Cells per side of the (eta, phi) grid, eta in [-2.5, 2.5], phi in [-pi, pi).
    seed
        Random seed; the same seed gives the same events.
    signal_fraction
        Fraction of signal events (label 1).

    Returns
    -------
    (x, y)
        ``x`` float32 tensor (n, 1, size, size) of transverse energy per cell in GeV,
        ``y`` int64 tensor of labels (1 signal, 0 background). Scale ``x`` before
        training, e.g. ``torch.log1p(x)``.
    """
    import torch

    rng = np.random.default_rng(seed)
    centres = (np.arange(size) + 0.5) / size
    eta, phi = np.meshgrid(-ETA_MAX + 2 * ETA_MAX * centres, -np.pi + 2 * np.pi * centres,
                           indexing="ij")
    y = (rng.random(n) < signal_fraction).astype(np.int64)
    x = np.zeros((n, 1, size, size), dtype=np.float64)
    for i in range(n):
        img = x[i, 0]
        if y[i]:
            # gluino pair -> 3 quarks each: 3 to 6 resolved jets (some merge), often with
            # two- or three-prong substructure
            for _ in range(3 + rng.binomial(3, 0.5)):
                pt = max(rng.normal(110.0, 50.0), 30.0)
                axis = (rng.uniform(-2.0, 2.0), rng.uniform(-np.pi, np.pi))
                _jet(rng, pt, int(rng.integers(1, 4)), _width(pt), img, eta, phi, axis)
        else:
            # QCD multijet: a dijet balanced in phi with a falling (power-law) spectrum,
            # plus up to two radiated jets
            lead = 200.0 * (1.0 + rng.pareto(2.5))
            phi1 = rng.uniform(-np.pi, np.pi)
            for pt, phi_j in ((lead, phi1),
                              (lead * rng.uniform(0.6, 1.0), phi1 + np.pi + rng.normal(0, 0.3))):
                _jet(rng, pt, 1 + rng.binomial(1, 0.2), _width(pt), img, eta, phi,
                     (rng.uniform(-2.0, 2.0), phi_j))
            for _ in range(rng.binomial(2, 0.35)):
                pt = lead * rng.uniform(0.1, 0.5)
                _jet(rng, pt, 1 + rng.binomial(1, 0.2), _width(pt), img, eta, phi,
                     (rng.uniform(-2.0, 2.0), rng.uniform(-np.pi, np.pi)))
        # pile-up: a few soft deposits anywhere
        for _ in range(rng.poisson(5)):
            _deposit(img, eta, phi, rng.uniform(-ETA_MAX, ETA_MAX), rng.uniform(-np.pi, np.pi),
                     rng.exponential(3.0), 0.2)
    # electronic noise, then zero suppression as in a real readout
    x += rng.normal(0.0, 0.3, x.shape)
    x[x < 0.5] = 0.0
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)


def calo_showers(n: int, size: int = 16, seed: int = 0,
                 energy_range: tuple[float, float] = (10.0, 100.0)) -> tuple[Any, Any]:
    """Electromagnetic showers in one calorimeter layer, for generative models.

    The incident energy is log-uniform in ``energy_range``; the deposited energy has a
    sampling resolution of 10 %/sqrt(E) plus a 1 % constant term; the transverse
    profile is a narrow core and a wide halo around a jittered impact point, filled by
    discrete hits (sampling fluctuations); cells get electronic noise and are
    zero-suppressed.

    Returns
    -------
    (x, energy)
        ``x`` float32 tensor (n, 1, size, size) of energy per cell in GeV and
        ``energy`` float32 tensor (n,) of incident energies in GeV.
    """
    import torch

    rng = np.random.default_rng(seed)
    low, high = energy_range
    energy = np.exp(rng.uniform(np.log(low), np.log(high), n))
    resolution = np.hypot(0.10 / np.sqrt(energy), 0.01)
    deposited = energy * np.clip(rng.normal(0.9, 0.9 * resolution), 0.0, None)
    grid = np.arange(size) - (size - 1) / 2
    x = np.zeros((n, 1, size, size))
    for i in range(n):
        cy, cx = rng.normal(0.0, 0.5, 2)
        core = rng.lognormal(np.log(0.8), 0.1)
        profile = np.exp(-((grid[:, None] - cy) ** 2 + (grid[None, :] - cx) ** 2)
                         / (2 * core**2))
        halo = np.exp(-((grid[:, None] - cy) ** 2 + (grid[None, :] - cx) ** 2)
                      / (2 * (2.5 * core) ** 2))
        p = 0.8 * profile / profile.sum() + 0.2 * halo / halo.sum()
        hits = max(int(deposited[i] * 20), 1)  # 50 MeV per hit
        x[i, 0] = rng.multinomial(hits, p.ravel() / p.sum()).reshape(size, size)
        x[i, 0] *= deposited[i] / hits
    x += rng.normal(0.0, 0.02, x.shape)
    x[x < 0.05] = 0.0
    return (torch.from_numpy(x.astype(np.float32)),
            torch.from_numpy(energy.astype(np.float32)))
