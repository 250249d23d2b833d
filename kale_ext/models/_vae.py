"""Autoencoders and beta-VAEs for anomaly detection: the reconstruction error is the score.

The beta-VAE loss is ``(1 - beta) * MSE + beta * KL`` where MSE is the squared
reconstruction error summed over a sample's pixels (or, with ``reduction="mean"``, per
pixel) and KL the closed-form divergence of the encoder's diagonal Gaussian from
N(0, 1), summed over latent dimensions; both are averaged over the batch. As beta
grows towards 1 the posterior means go to 0 and variances to 1 (:func:`latent_stats`
shows it).

:func:`beta_sweep` trains one VAE per beta and :func:`beta_table` sets the posterior's
average variance and mean beside the values published for the same sweep
(:data:`BETA_TABLE_PUBLISHED`), which used the per-pixel reconstruction term
(``reduction="mean"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kale_ext._errors import ConfigError, LayoutError
from kale_ext.models import _loop
from kale_ext.models._builder import AutoEncoder, build_model, sequential
from kale_ext.models._layout import parse
from kale_ext.models._shapes import check_shape, plan_layers, to_input_shape

# The beta sweep of the work this package descends from: the betas and the posterior's
# average variance / average mean it published (None where it gave no number; "~0" is 0).
BETAS_PUBLISHED: tuple[float, ...] = (1.0, 0.5, 0.05, 5e-3, 5e-4, 5e-5, 5e-6, 0.0)
BETA_TABLE_PUBLISHED: dict[float, tuple[float | None, float | None]] = {
    1.0: (1.0, 0.0), 0.5: (None, None), 0.05: (0.864, None), 5e-3: (0.555, None),
    5e-4: (0.378, None), 5e-5: (0.097, None), 5e-6: (None, None), 0.0: (0.0, None),
}


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per sample, summed over the latent dimensions.

    Closed form: ``0.5 * sum(mu**2 + exp(logvar) - 1 - logvar)``. Returns shape (N,).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor | None = None,
             logvar: torch.Tensor | None = None, beta: float = 0.5,
             reduction: str = "sum") -> dict[str, torch.Tensor]:
    """``{"loss", "mse", "kl"}`` with loss = (1 - beta) * reconstruction + beta * KL.

    Parameters
    ----------
    recon, x
        Reconstruction and input, (N, ...).
    mu, logvar
        The encoder's Gaussian; without them (a plain autoencoder) KL is 0.
    beta
        Weight in [0, 1] of the KL term.
    reduction
        The reconstruction term: ``"sum"`` (default) is the squared error summed over
        a sample's features and averaged over the batch, so it is on the same
        per-sample scale as KL; ``"mean"`` is the per-element MSE. ``mse`` in the
        result is always the per-element MSE.
    """
    if not 0.0 <= beta <= 1.0:
        raise ConfigError(f"beta must be in [0, 1], but got {beta}")
    if reduction not in ("sum", "mean"):
        raise ConfigError(f"reduction must be 'sum' or 'mean', but got {reduction!r}")
    mse = nn.functional.mse_loss(recon, x)
    rec = mse * x[0].numel() if reduction == "sum" else mse
    if mu is None or logvar is None:
        return {"loss": rec, "mse": mse, "kl": torch.zeros(())}
    kl = kl_divergence(mu, logvar).mean()
    return {"loss": (1.0 - beta) * rec + beta * kl, "mse": mse, "kl": kl}


class VAE(nn.Module):
    """Encoder body, Gaussian heads (mean and log-variance) and a decoder.

    ``forward(x)`` returns ``(reconstruction, mu, logvar)``; in training mode the
    code is sampled with the reparameterisation trick, in eval mode it is ``mu``.
    """

    def __init__(self, encoder: nn.Module, features: int, latent_dim: int,
                 decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.mu = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)
        self.decoder = decoder

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decoder(z), mu, logvar


def build_vae(layout: str, input_shape: tuple[int, ...], latent_dim: int) -> VAE:
    """Build a :class:`VAE` from ``"Encoder={...}Decoder={...}"``.

    The encoder must end flat; Gaussian heads of ``latent_dim`` units follow it; the
    decoder starts from ``(latent_dim,)`` and must end at ``input_shape``, or flat with
    its number of values (then it is reshaped to it, as TMVA's ``DENSE|0|SIGMOID`` does).
    """
    shape = check_shape(input_shape)
    kind, parts = parse(layout)
    if kind != "autoencoder":
        raise LayoutError(f"a VAE layout must be 'Encoder={{...}}Decoder={{...}}', got "
                          f"{layout!r}", rule="autoencoder form")
    size = math.prod(shape)
    enc = plan_layers(parts["encoder"], shape, n_inputs=size)
    if len(enc[-1].out_shape) != 1:
        raise enc[-1].token.error(f"a VAE encoder must end flat, but ends at "
                                  f"{enc[-1].out_shape}; end it with FLAT or a DENSE layer")
    dec = to_input_shape(plan_layers(parts["decoder"], (int(latent_dim),), n_inputs=size,
                                     outputs=size), shape)
    if dec[-1].out_shape != shape:
        raise dec[-1].token.error(f"a VAE decoder must end at the input shape {shape}, "
                                  f"but ends at {dec[-1].out_shape}")
    return VAE(sequential(enc), enc[-1].out_shape[0], int(latent_dim), sequential(dec))


def _outputs(model: nn.Module, x: torch.Tensor) -> tuple[Any, Any, Any]:
    if isinstance(model, VAE):
        return model(x)
    if isinstance(model, AutoEncoder):
        return model(x), None, None
    raise ConfigError(f"expected a VAE or AutoEncoder, got {type(model).__name__}")


def anomaly_scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared reconstruction error (eval mode, no gradients)."""
    model.eval()
    with torch.no_grad():
        recon = _outputs(model, x)[0]
    return (recon - x).pow(2).flatten(1).mean(1)


def latent_stats(model: VAE, x: torch.Tensor) -> dict[str, float]:
    """Average posterior mean, mean |mean| and average variance of a VAE on ``x``.

    With beta towards 1, ``latent_mean_abs`` goes to 0 and ``latent_var`` to 1.
    """
    model.eval()
    with torch.no_grad():
        mu, logvar = model.encode(x)
    return {"latent_mean": float(mu.mean()), "latent_mean_abs": float(mu.abs().mean()),
            "latent_var": float(logvar.exp().mean())}


def anomaly_data(config: dict[str, Any]) -> dict[str, Any]:
    """Normal-only training data and a validation set with planted anomalies (label 1).

    ``dataset="digits"``: the digits in ``anomaly_classes`` (default [0]) are anomalies;
    ``dataset="jets"``: signal events are anomalies, background is normal.
    """
    from kale_ext.models._classifier import load_dataset

    name = str(config.get("dataset", "digits"))
    data = load_dataset(name, config)
    (x_train, y_train), (x_val, y_val) = data["train"], data["val"]
    if name == "jets":  # log1p energies into about [0, 1] for a sigmoid decoder
        x_train, x_val = (x_train / 7.0).clamp(0, 1), (x_val / 7.0).clamp(0, 1)
        anomalous = [1]
    else:
        anomalous = [int(c) for c in config.get("anomaly_classes", [0])]
    is_anomaly = torch.isin(y_val, torch.tensor(anomalous)).long()
    normal = ~torch.isin(y_train, torch.tensor(anomalous))
    return {"train": x_train[normal], "val": (x_val, is_anomaly),
            "input_shape": data["input_shape"]}


def default_layout(input_shape: tuple[int, ...], latent_dim: int, variational: bool) -> str:
    """Lay out a small dense (8x8) or convolutional (larger images) encoder/decoder."""
    c, h, w = input_shape
    code = "" if variational else f",DENSE|{latent_dim}|LINEAR"
    if h * w <= 64:
        return (f"Encoder={{FLAT,DENSE|32|RELU{code}}}Decoder={{DENSE|32|RELU,"
                f"DENSE|{c * h * w}|SIGMOID,RESHAPE|{c}|{h}|{w}}}")
    return (f"Encoder={{CONV|8|3|3|2|2|1|1|RELU,FLAT,DENSE|64|RELU{code}}}"
            f"Decoder={{DENSE|{8 * (h // 2) * (w // 2)}|RELU,RESHAPE|8|{h // 2}|{w // 2},"
            f"DECONV|{c}|4|4|2|2|1|1|SIGMOID}}")


def train_vae(config: dict[str, Any]) -> dict[str, float]:
    """Train a beta-VAE (or autoencoder) on normal data as a trial; score planted anomalies.

    Config keys (all optional): ``dataset`` ("digits" or "jets"), ``anomaly_classes``
    (digits, default [0]), ``beta`` (0.1), ``latent_dim`` (4), ``variational`` (True),
    ``reduction`` ("sum", see :func:`vae_loss`), ``layout`` (``"Encoder={...}Decoder={...}"``;
    for a VAE the encoder ends flat and the decoder starts from the latent code),
    ``epochs`` (20), ``lr`` (3e-3),
    ``batch_size`` (64), ``seed`` (0), ``device`` ("cpu"; "cuda" or "auto").

    Reports ``loss, mse, kl, val_loss, val_mse, val_kl, val_auc`` (ROC AUC of the
    reconstruction error against the anomaly labels) and, for a VAE, ``latent_mean``,
    ``latent_mean_abs`` and ``latent_var`` every epoch; returns the last epoch's.
    """
    from sklearn.metrics import roc_auc_score

    generator = _loop.setup(config)
    data = anomaly_data(config)
    variational = bool(config.get("variational", True))
    beta = float(config.get("beta", 0.1)) if variational else 0.0
    latent = int(config.get("latent_dim", 4))
    reduction = str(config.get("reduction", "sum"))
    shape = data["input_shape"]
    layout = str(config.get("layout", default_layout(shape, latent, variational)))
    model = build_vae(layout, shape, latent) if variational else build_model(layout, shape)
    if not isinstance(model, VAE | AutoEncoder):
        raise ConfigError(f"an autoencoder layout must be 'Encoder={{...}}Decoder={{...}}', "
                          f"got {layout!r}")
    dev = _loop.device(config)
    model.to(dev)
    opt = _loop.optimizer(model.parameters(), config, lr=3e-3)
    modules = {"model": model, "optimizer": opt}
    start = _loop.resume(modules, generator)
    x_train, (x_val, is_anomaly) = data["train"].to(dev), data["val"]
    x_val = x_val.to(dev)
    metrics: dict[str, float] = {}
    for epoch in range(start, int(config.get("epochs", 20))):
        model.train()
        sums = {"loss": 0.0, "mse": 0.0, "kl": 0.0}
        for idx in _loop.batches(len(x_train), int(config.get("batch_size", 64)), generator):
            opt.zero_grad()
            parts = _step_loss(model, x_train[idx], beta, reduction)
            parts["loss"].backward()
            opt.step()
            for key in sums:
                sums[key] += float(parts[key].detach()) * len(idx)
        metrics = {key: value / len(x_train) for key, value in sums.items()}
        model.eval()
        with torch.no_grad():
            val = _step_loss(model, x_val, beta, reduction)
        metrics.update({f"val_{key}": float(value) for key, value in val.items()})
        scores = anomaly_scores(model, x_val).cpu()
        metrics["val_auc"] = float(roc_auc_score(is_anomaly.numpy(), scores.numpy()))
        if isinstance(model, VAE):
            metrics.update(latent_stats(model, x_val))
        _loop.checkpoint(modules, epoch, generator)
        _loop.report(epoch, metrics)
    return metrics


def _step_loss(model: nn.Module, x: torch.Tensor, beta: float,
               reduction: str) -> dict[str, torch.Tensor]:
    recon, mu, logvar = _outputs(model, x)
    return vae_loss(recon, x, mu, logvar, beta, reduction)


def train_autoencoder(config: dict[str, Any]) -> dict[str, float]:
    """Run :func:`train_vae` as a trial with a plain (deterministic) autoencoder, MSE loss.

    A custom ``layout``'s encoder ends at the code (e.g. ``DENSE|4|LINEAR``).
    """
    return train_vae({**config, "variational": False})


def beta_table(betas: Sequence[float], latent_var: Sequence[float],
               latent_mean: Sequence[float]) -> Any:
    """Tabulate "beta, avg var, avg mean" as measured, beside the published values.

    Parameters
    ----------
    betas, latent_var, latent_mean
        One entry per trained VAE: its beta, the average posterior variance and the
        average posterior mean on the validation data (``latent_stats``).

    Returns
    -------
    pandas.DataFrame
        Columns ``beta, avg var, avg mean, published avg var, published avg mean``,
        sorted by beta from the largest; the published columns are NaN where
        :data:`BETA_TABLE_PUBLISHED` has no number for that beta.
    """
    import pandas as pd

    if not len(betas) == len(latent_var) == len(latent_mean):
        raise ConfigError(f"beta_table needs one avg var and one avg mean per beta, got "
                          f"{len(betas)} betas, {len(latent_var)} variances and "
                          f"{len(latent_mean)} means")
    rows = []
    for beta, var, mean in zip(betas, latent_var, latent_mean, strict=True):
        var_pub, mean_pub = BETA_TABLE_PUBLISHED.get(float(beta), (None, None))
        rows.append({"beta": float(beta), "avg var": float(var), "avg mean": float(mean),
                     "published avg var": var_pub, "published avg mean": mean_pub})
    table = pd.DataFrame(rows).astype(float)
    return table.sort_values("beta", ascending=False).reset_index(drop=True)


def beta_sweep(betas: Sequence[float] = BETAS_PUBLISHED,
               config: dict[str, Any] | None = None) -> Any:
    """Train one VAE per beta here, one after the other, and return :func:`beta_table`.

    ``config`` goes to :func:`train_vae` for every beta (default ``reduction="mean"``,
    the published sweep's per-pixel reconstruction term). Outside a search the
    trainable's reports only check their arguments, so this runs anywhere; a search with
    ``kale.grid(betas)`` over :func:`train_vae` runs the same sweep on a cluster.
    """
    base = {"reduction": "mean", **(config or {})}
    runs = [train_vae({**base, "beta": float(beta)}) for beta in betas]
    return beta_table(list(betas), [r["latent_var"] for r in runs],
                      [r["latent_mean"] for r in runs])
