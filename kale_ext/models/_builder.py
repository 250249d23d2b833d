"""Torch modules from checked layout plans: ``build_model`` and ``describe``.

The grammar is documented in :mod:`kale_ext.models._layout`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kale_ext.models._layout import Shape
from kale_ext.models._shapes import LayerPlan, plan


class Reshape(nn.Module):
    """Reshape each sample to ``shape`` (the batch dimension is kept)."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Gauss(nn.Module):
    """TMVA's GAUSS activation, exp(-x^2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-x * x)


class SymmRelu(nn.Module):
    """TMVA's SYMMRELU activation, |x|."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()


class Recurrent(nn.Module):
    """An RNN/LSTM/GRU over (N, T, F) that returns the last state or the whole sequence."""

    def __init__(self, cell: nn.Module, in_shape: Shape, return_sequence: bool) -> None:
        super().__init__()
        self.cell = cell
        self.in_shape = tuple(in_shape)
        self.return_sequence = return_sequence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.cell(x.reshape(x.shape[0], self.in_shape[-2], self.in_shape[-1]))
        return out if self.return_sequence else out[:, -1]


class SequenceBatchNorm(nn.Module):
    """Batch norm of each feature of a (N, T, F) sequence."""

    def __init__(self, features: int, **kwargs: Any) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(features, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class AutoEncoder(nn.Module):
    """An encoder and a decoder; ``forward`` reconstructs, ``encode`` gives the code."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class GANPair(nn.Module):
    """A generator and a discriminator; ``forward(z)`` scores generated samples."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module,
                 latent_shape: Shape) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.latent_shape = tuple(latent_shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` generated samples from standard normal latent vectors."""
        z = torch.randn(n, *self.latent_shape, generator=generator)
        return self.generator(z.to(next(self.generator.parameters()).device))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.discriminator(self.generator(z))


def activation(name: str, arg: float | None = None, dim: int = -1) -> nn.Module:
    """Make the torch module for an activation name of the layout grammar."""
    if name == "LEAKYRELU":
        return nn.LeakyReLU(0.2 if arg is None else arg)
    if name == "ELU":
        return nn.ELU(1.0 if arg is None else arg)
    if name == "SOFTMAX":
        return nn.Softmax(dim=dim)
    simple: dict[str, type[nn.Module]] = {
        "TANH": nn.Tanh, "FTANH": nn.Tanh, "RELU": nn.ReLU, "SIGMOID": nn.Sigmoid, "GELU": nn.GELU,
        "IDENTITY": nn.Identity, "LINEAR": nn.Identity, "SOFTSIGN": nn.Softsign,
        "SYMMRELU": SymmRelu, "GAUSS": Gauss}
    return simple[name]()


def _with_act(layer: nn.Module, act: str, dim: int) -> nn.Module:
    if act in ("IDENTITY", "LINEAR"):
        return layer
    return nn.Sequential(layer, activation(act, dim=dim))


def _module(lp: LayerPlan) -> nn.Module:
    p, shape, kind = lp.params, lp.in_shape, lp.kind
    channel_dim = 1 if len(shape) == 3 else -1  # softmax over channels of an image
    if kind == "DENSE":
        return _with_act(nn.Linear(shape[-1], p["units"]), p["act"], -1)
    if kind == "CONV":
        conv = nn.Conv2d(shape[0], p["depth"], p["kernel"], p["stride"], p["padding"])
        return _with_act(conv, p["act"], 1)
    if kind == "DECONV":
        deconv = nn.ConvTranspose2d(shape[0], p["depth"], p["kernel"], p["stride"],
                                    p["padding"])
        return _with_act(deconv, p["act"], 1)
    if kind == "MAXPOOL":
        return nn.MaxPool2d(p["kernel"], p["stride"])
    if kind == "RESHAPE":
        return nn.Flatten() if p["flat"] else Reshape(lp.out_shape)
    if kind == "PADDING2D":
        top, bottom, left, right = p["pad"]
        return nn.ZeroPad2d((left, right, top, bottom))
    if kind == "UPSAMPLE":
        return nn.Upsample(scale_factor=tuple(float(f) for f in p["factor"]), mode="nearest")
    if kind == "BNORM":
        kwargs: dict[str, Any] = {"eps": p["eps"]}
        if p["momentum"] != -1.0:  # TMVA/Keras weight the running average, torch the update
            kwargs["momentum"] = 1.0 - p["momentum"]
        if len(shape) == 3:
            return nn.BatchNorm2d(shape[0], **kwargs)
        if len(shape) == 2:
            return SequenceBatchNorm(shape[1], **kwargs)
        return nn.BatchNorm1d(shape[0], **kwargs)
    if kind == "DROPOUT":
        return nn.Dropout(p["p"])
    if kind in ("RNN", "LSTM", "GRU"):
        cells: dict[str, type[nn.Module]] = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
        cell = cells[kind](shape[-1], p["units"], batch_first=True)
        return Recurrent(cell, shape, p["return_sequence"])
    return activation(p["act"], p.get("arg"), channel_dim)  # ACT


def sequential(layers: list[LayerPlan]) -> nn.Sequential:
    """Chain planned layers into an ``nn.Sequential``."""
    return nn.Sequential(*(_module(lp) for lp in layers))


def build_model(layout: str, input_shape: tuple[int, ...] | str,
                outputs: int | None = None) -> nn.Module:
    """Build a torch module from a TMVA-style layout string, as TMVA would build it.

    Parameters
    ----------
    layout
        Comma-separated layers such as ``"CONV|16|3|3|1|1|1|1|RELU,MAXPOOL|2|2|2|2,FLAT,
        DENSE|10|LINEAR"``; ``"Encoder={...}Decoder={...}"`` for an autoencoder;
        ``"generator##discriminator"`` for a GAN; TMVA's ``"Layout=..."`` or a whole TMVA
        option string. See :mod:`kale_ext.models._layout`.
    input_shape
        One sample's shape without the batch dimension: ``(C, H, W)``, ``(T, F)`` or
        ``(F,)``, or a TMVA InputLayout such as ``"1|16|16"``; for a GAN, the
        generator's latent shape.
    outputs
        The model's number of outputs, the width of TMVA's output layer (``DENSE|0|act``
        or a bare activation ending the layout); without it such a layer is an error
        and a bare activation is an activation layer.

    Returns
    -------
    torch.nn.Module
        ``nn.Sequential``, :class:`AutoEncoder` or :class:`GANPair`.

    Raises
    ------
    kale_ext.LayoutError
        Naming the token, its index and character offset, and the rule it broke.
    """
    checked = plan(layout, input_shape, outputs)
    parts = {name: sequential(layers) for name, layers in checked.parts.items()}
    if checked.kind == "autoencoder":
        return AutoEncoder(parts["encoder"], parts["decoder"])
    if checked.kind == "gan":
        return GANPair(parts["generator"], parts["discriminator"], checked.input_shape)
    return parts["model"]


@dataclass(frozen=True)
class LayerInfo:
    """One row of :func:`describe`."""

    part: str
    index: int
    token: str
    kind: str
    input_shape: Shape
    output_shape: Shape
    params: int


def describe(layout: str, input_shape: tuple[int, ...] | str,
             outputs: int | None = None) -> list[LayerInfo]:
    """Per-layer output shapes and parameter counts of a layout (a DataFrame-ready list).

    ``pandas.DataFrame(describe(layout, shape))`` gives a table; the last row's
    ``output_shape`` is the model's. Arguments as for :func:`build_model`; a layer the
    layout implies (an autoencoder's final reshape) shows ``(implicit)`` in its token.
    """
    checked = plan(layout, input_shape, outputs)
    rows = []
    for part, layers in checked.parts.items():
        for lp in layers:
            rows.append(LayerInfo(part, lp.token.index, lp.token.text, lp.kind, lp.in_shape,
                                  lp.out_shape, lp.weights))
    return rows
