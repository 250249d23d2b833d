"""Jet images of boosted W bosons or top quarks against QCD jets (numpy only).

The model, in the spirit of the jet-image studies (de Oliveira et al., "Jet-images:
deep learning edition", arXiv:1511.05190) and made from a few lines of physics:

- **Kinematics.** Every jet has a transverse momentum pT drawn from a falling
  spectrum dN/dpT ~ pT^-4 in a narrow window (250-300 GeV for W, 500-600 GeV for
  top), the same for signal and background, so pT itself tells nothing.
- **Signal: two prongs (W) or three (top).** A W boson of mass m (Breit-Wigner,
  80.4 GeV, width 2.1 GeV) decays to two quarks sharing its pT as z and 1 - z; in the
  small-angle limit m^2 = z (1 - z) pT^2 dR^2 fixes their opening angle dR, about
  2 m / pT (0.6 at 270 GeV). Only decays whose quarks both lie within the jet radius
  R = 1 are kept (a fully merged jet). A top (173 GeV, width 1.4 GeV) splits into a b
  quark and a W the same way, with m_t^2 = m_W^2 / z_W + z_W z_b pT^2 dR^2, and the W
  decays as above.
- **Radiation.** Every quark or gluon emits soft gluons with the leading-logarithm
  density (2 alpha_s C / pi) (dtheta / theta) (dz / z), sampled as a Poisson process in
  (log 1/theta, log 1/z) with a cut on the emission's kT of 1 GeV (C = 4/3 for quarks,
  3 for gluons, alpha_s = 0.1). A QCD jet (a quark or, half the time, a gluon) radiates
  at angles up to R: its mass comes only from these emissions, so it falls steeply from
  small values with a Sudakov peak and a long tail, and its second prong is usually
  soft. A W is a colour singlet: its quarks radiate only inside the cone of their
  opening angle (colour coherence), so signal jets are cleaner outside their prongs.
- **Hadronisation and detector.** Each prong becomes 1 + Poisson(3 ln(1 + pT/GeV))
  hadrons sharing its pT, each with a kT of about 0.4 GeV around the prong's axis, so
  soft hadrons spread wider than hard ones; soft underlying-event / pile-up particles
  land anywhere in the image; cells get a 5 %/sqrt(E) energy resolution, 0.05 GeV of noise and a
  0.25 GeV zero suppression.
- **Pre-processing** (as in the jet-image papers): the leading prong is put at the
  centre, the image is rotated so that the second prong lies straight below it, and
  flipped so that the right half holds more pT.

The CNN's task is the physics one: a mass near m_W (or m_t) together with a hard,
two- (three-) prong substructure marks signal; QCD jets reach that mass only through
one hard wide-angle emission, which is rare.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kale_ext._errors import ConfigError

RADIUS = 1.0  # the jet radius R: prongs of a kept decay lie within it
ALPHA_S = 0.1
PT_RANGES = {"W": (250.0, 300.0), "top": (500.0, 600.0)}
_KT_MIN = 1.0  # GeV: the shower's cut-off, below which hadronisation takes over
_THETA_MIN = 0.01


def _pt(rng: np.random.Generator, low: float, high: float) -> float:
    """Draw a jet pT from dN/dpT ~ pT^-4 in [low, high] (inverse transform of the CDF)."""
    u = rng.random()
    return float((low**-3 - u * (low**-3 - high**-3)) ** (-1.0 / 3.0))


def _mass(rng: np.random.Generator, mass: float, width: float) -> float:
    """Draw a Breit-Wigner (Cauchy) mass, kept within five widths of the pole."""
    return float(mass + 0.5 * width * np.tan(np.pi * (rng.random() - 0.5) * 0.94))


def _split(rng: np.random.Generator, pt: float, mass: float, m1: float = 0.0,
           z_low: float = 0.0) -> tuple[float, float] | None:
    """(z, dR) of a 1 -> 2 decay of ``mass`` at ``pt`` whose daughters fit within R.

    Daughter 1 has mass ``m1`` (0 for a quark) and the pT fraction z, daughter 2 is
    massless; ``mass^2 = m1^2 / z + z (1 - z) pT^2 dR^2`` in the small-angle limit.
    None when no fraction gives dR < R.
    """
    for _ in range(20):
        z = rng.uniform(max(z_low, (m1 / mass) ** 2), 1.0)
        rest = mass**2 - m1**2 / z
        if rest <= 0:
            continue
        dr = float(np.sqrt(rest / (z * (1 - z))) / pt)
        if dr < RADIUS:
            return z, dr
    return None


def _radiate(rng: np.random.Generator, prongs: list[list[float]], index: int,
             theta_max: float, casimir: float) -> None:
    """Append the soft gluons prong ``index`` emits at angles below ``theta_max``."""
    _, eta, phi = prongs[index]
    alpha = 2 * ALPHA_S * casimir / np.pi
    z_min = 0.002
    area = np.log(theta_max / _THETA_MIN) * np.log(0.5 / z_min)
    for _ in range(rng.poisson(alpha * area)):
        theta = theta_max * (_THETA_MIN / theta_max) ** rng.random()
        z = 0.5 * (z_min / 0.5) ** rng.random()
        pt = z * prongs[index][0]  # a fraction of what the emitter still carries
        if pt * theta < _KT_MIN:  # below the cut-off: no perturbative emission
            continue
        angle = rng.uniform(0, 2 * np.pi)
        prongs.append([pt, eta + theta * np.cos(angle), phi + theta * np.sin(angle)])
        prongs[index][0] -= pt


def _prongs(rng: np.random.Generator, kind: str, pt: float) -> list[list[float]]:
    """Draw the jet's partons as [pT, eta, phi] around (0, 0), hardest first.

    Radiation is included.
    """
    if kind == "qcd":
        prongs = [[pt, 0.0, 0.0]]
        _radiate(rng, prongs, 0, RADIUS, 3.0 if rng.random() < 0.5 else 4.0 / 3.0)
    else:
        for _ in range(100):  # draw decays until one is fully merged
            if kind == "W":
                decay = _split(rng, pt, _mass(rng, 80.4, 2.1), z_low=0.0)
                if decay is None:
                    continue
                z, dr = decay
                partons = [(z, dr * (1 - z), 0.0), (1 - z, -dr * z, 0.0)]
                cones = [dr, dr]
            else:
                m_w = _mass(rng, 80.4, 2.1)
                top = _split(rng, pt, _mass(rng, 173.0, 1.4), m1=m_w)
                w_decay = None if top is None else _split(rng, top[0] * pt, m_w)
                if top is None or w_decay is None:
                    continue
                (z_w, dr), (z_q, dr_q) = top, w_decay
                w_axis = dr * (1 - z_w)
                partons = [(1 - z_w, -dr * z_w, 0.0),
                           (z_w * z_q, w_axis, dr_q * (1 - z_q)),
                           (z_w * (1 - z_q), w_axis, -dr_q * z_q)]
                cones = [dr, dr_q, dr_q]
            angle = rng.uniform(0, 2 * np.pi)
            c, s = np.cos(angle), np.sin(angle)
            prongs = [[f * pt, a * c - b * s, a * s + b * c] for f, a, b in partons]
            for i, cone in enumerate(cones):  # colour coherence: within the decay's cone
                _radiate(rng, prongs, i, cone, 4.0 / 3.0)
            break
        else:
            raise ConfigError(f"no fully merged {kind} decay at pT {pt:.0f} GeV within R = "
                              f"{RADIUS}; raise pt_range (e.g. {PT_RANGES[kind]})")
    return sorted(prongs, key=lambda p: -p[0])


def _hadrons(rng: np.random.Generator, prongs: list[list[float]]) -> np.ndarray:
    """(pT, eta, phi) rows of the hadrons the prongs become."""
    rows = []
    for pt, eta, phi in prongs:
        count = 1 + rng.poisson(3.0 * np.log1p(pt))
        share = pt * rng.dirichlet(np.ones(count))
        spread = np.clip(rng.exponential(0.4, count) / np.maximum(share, 1e-3), 0, 0.4)
        angle = rng.uniform(0, 2 * np.pi, count)
        rows.append(np.stack([share, eta + spread * np.cos(angle),
                              phi + spread * np.sin(angle)], 1))
    return np.concatenate(rows)


def _preprocess(particles: np.ndarray, prongs: list[list[float]],
                extent: float) -> np.ndarray:
    """Centre the leading prong, turn the second below it, flip the harder side right."""
    eta = particles[:, 1] - prongs[0][1]
    phi = particles[:, 2] - prongs[0][2]
    if len(prongs) > 1:
        d_eta, d_phi = prongs[1][1] - prongs[0][1], prongs[1][2] - prongs[0][2]
        turn = -np.pi / 2 - np.arctan2(d_phi, d_eta)
        c, s = np.cos(turn), np.sin(turn)
        eta, phi = eta * c - phi * s, eta * s + phi * c
    pt = np.where((np.abs(eta) < extent) & (np.abs(phi) < extent), particles[:, 0], 0.0)
    if pt[eta < 0].sum() > pt[eta > 0].sum():  # what the image holds decides
        eta = -eta
    return np.stack([particles[:, 0], eta, phi], 1)


def boosted_jet_images(n: int, size: int = 64, seed: int = 0, signal: str = "W",
                       signal_fraction: float = 0.5,
                       pt_range: tuple[float, float] | None = None, extent: float = 1.2,
                       pileup: float = 4.0) -> tuple[Any, Any]:
    """Calorimeter images of boosted W (or top) jets against QCD jets (model: module doc).

    Parameters
    ----------
    n
        Number of jets.
    size
        Cells per side; the image covers ``[-extent, extent]`` in eta and phi around the
        leading prong, so a cell is ``2 * extent / size`` wide (0.0375 at 64).
    seed
        Random seed; the same seed gives the same jets.
    signal
        ``"W"`` (two prongs, 80 GeV) or ``"top"`` (three prongs, 173 GeV).
    signal_fraction
        Fraction of signal jets (label 1).
    pt_range
        The jets' pT window in GeV (default: 250-300 for W, 500-600 for top).
    extent
        Half-width of the image in eta and phi.
    pileup
        Mean number of soft underlying-event / pile-up particles (0.5 GeV on average)
        in the image.

    Returns
    -------
    (x, y)
        ``x`` float32 tensor (n, 1, size, size) of pT per cell in GeV, eta along the
        third axis and phi along the fourth; ``y`` int64 tensor (1 signal, 0 QCD).
        Scale ``x`` before training, e.g. ``torch.log1p(x)``; :func:`jet_mass` reads
        the jets' masses back from the images.
    """
    import torch

    if signal not in PT_RANGES:
        raise ConfigError(f"signal {signal!r} is not one of {sorted(PT_RANGES)}")
    low, high = PT_RANGES[signal] if pt_range is None else pt_range
    if not 0 < low <= high:
        raise ConfigError(f"pt_range must be (low, high) with 0 < low <= high, got "
                          f"{pt_range!r}")
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < signal_fraction).astype(np.int64)
    cell = 2 * extent / size
    flat = np.zeros(n * size * size)
    for i in range(n):
        prongs = _prongs(rng, signal if y[i] else "qcd", _pt(rng, low, high))
        particles = _preprocess(_hadrons(rng, prongs), prongs, extent)
        soft = rng.poisson(pileup)
        particles = np.concatenate([particles, np.stack(
            [rng.exponential(0.5, soft), *rng.uniform(-extent, extent, (2, soft))], 1)])
        ie = np.floor((particles[:, 1] + extent) / cell).astype(np.int64)
        ip = np.floor((particles[:, 2] + extent) / cell).astype(np.int64)
        inside = (ie >= 0) & (ie < size) & (ip >= 0) & (ip < size)
        np.add.at(flat, (i * size + ie[inside]) * size + ip[inside], particles[inside, 0])
    x = flat.reshape(n, 1, size, size)
    # the calorimeter: stochastic resolution, electronic noise, zero suppression
    x += rng.normal(0.0, 1.0, x.shape) * np.sqrt(0.05**2 * x + 0.05**2)
    x[x < 0.25] = 0.0
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)


def jet_mass(x: Any, extent: float = 1.2) -> Any:
    """Invariant masses (GeV) of jet images, each cell a massless particle at its centre.

    ``x`` is (N, 1, S, S) or (N, S, S) of pT per cell, as :func:`boosted_jet_images`
    makes them with the same ``extent``. The mass does not depend on where the jet sits
    in eta and phi, so the image's own coordinates serve.
    """
    import torch

    images = torch.as_tensor(x, dtype=torch.float64)
    images = images.reshape(len(images), images.shape[-2], images.shape[-1])
    size = images.shape[-1]
    centres = -extent + (torch.arange(size, dtype=torch.float64) + 0.5) * 2 * extent / size
    eta, phi = centres[:, None], centres[None, :]
    # four-momenta (E, px, py, pz) = pT (cosh eta, cos phi, sin phi, sinh eta)
    parts = [torch.cosh(eta) + 0 * phi, torch.cos(phi) + 0 * eta,
             torch.sin(phi) + 0 * eta, torch.sinh(eta) + 0 * phi]
    e, px, py, pz = ((images * part).sum((1, 2)) for part in parts)
    return (e**2 - px**2 - py**2 - pz**2).clamp(min=0).sqrt().float()
