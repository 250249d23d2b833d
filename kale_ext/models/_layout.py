"""Layout strings in the TMVA ``MethodDL`` style: the grammar and its parser (no torch).

A layout is a comma-separated list of layers, each a ``|``-separated token whose first
field names the layer. Shapes exclude the batch dimension: ``(C, H, W)`` for images,
``(T, F)`` for sequences, ``(F,)`` for flat features. Names are case-insensitive and
spaces are ignored.

Grammar (fields in ``[]`` are optional; TMVA's field order where TMVA has the layer)::

    layout       := ["Layout="] (layers | "Encoder={" layers "}Decoder={" layers "}"
                    | layers "##" layers)
    layers       := layer ("," layer)*
    DENSE|width[|act]                       dense layer; as in TMVA, act|width and a bare
                                            "64|RELU" or "TANH|64" token are dense too;
                                            width may be a formula in N, the number of
                                            input values ("(N+100)*2", truncated as TMVA
                                            does); width 0 is TMVA's output layer
    CONV|depth|fh|fw|sh|sw[|ph|pw][|act]    2-D convolution: depth filters of fh x fw,
                                            strides sh, sw, zero padding ph rows / pw
                                            columns on each side (TMVA: CONV|depth|
                                            filterH|filterW|strideRows|strideCols|
                                            paddingH|paddingW|activation)
    DECONV|depth|fh|fw|sh|sw[|ph|pw][|act]  transposed convolution, same fields;
                                            out = (in - 1) * s - 2 * p + f
    MAXPOOL|fh|fw|sh|sw                     max pooling (TMVA order)
    RESHAPE|d|h|w[|FLAT]                    reshape to (d, h, w), or flatten with FLAT;
                                            d * h * w must equal the input's size
    FLAT | RESHAPE|FLAT                     flatten
    PADDING2D|top|bottom|left|right         zero padding (PADDING2D|p pads all sides)
    UPSAMPLE|f  or  UPSAMPLE|fh|fw          nearest-neighbour upsampling
    BNORM[|momentum[|epsilon]]              batch norm; momentum is TMVA/Keras's weight
                                            of the running average (0.99), not torch's
    DROPOUT|p                               dropout with drop probability p in [0, 1)
    RNN|units[|inputSize|timeSteps|rememberState|returnSequence]   also LSTM, GRU (GRU:
                                            a sixth field, TMVA's resetGateAfter 0/1);
                                            inputSize/timeSteps 0 = take from the input,
                                            rememberState must be 0, returnSequence 0/1
    TANH RELU SIGMOID GELU IDENTITY LINEAR SOFTMAX SOFTSIGN SYMMRELU GAUSS FTANH
    LEAKYRELU[|slope] ELU[|alpha]           a standalone activation layer

Activations inside DENSE/CONV/DECONV are the same names; the default is TANH, as in
TMVA (FTANH, TMVA's fast tanh, is tanh). LEAKYRELU's default slope is 0.2 (the DCGAN
choice). An autoencoder's decoder starts from the encoder's output shape and must end
at the input shape. In ``generator##discriminator`` the input shape is the generator's
latent shape, the discriminator reads the generator's output and must end in one logit
(``DENSE|1|LINEAR``).

TMVA's output layer (read in :mod:`kale_ext.models._shapes`, which knows the shapes):
``DENSE|0|act`` as the last layer, or a bare activation ending the layout where the
shape before it is not already the output's (TMVA's older ``...,LINEAR``), is a dense
layer with as many units as the model has outputs: ``outputs`` when the caller gives
it, the input's number of values at the end of an autoencoder's decoder, 1 at the end
of a discriminator. An autoencoder's decoder that ends flat with the input's number of
values is reshaped to the input, as TMVA compares flattened outputs. A whole TMVA option
string (``"!H:V:Layout=...:TrainingStrategy=..."``) may be given: its ``Layout=`` value
is read.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from kale_ext._errors import LayoutError
from kale_ext.models._tmva import FORMULA, layout_value, width_formula

Shape = tuple[int, ...]

ACTIVATIONS = ("TANH", "RELU", "SIGMOID", "LEAKYRELU", "ELU", "GELU", "IDENTITY", "LINEAR",
               "SOFTMAX", "SOFTSIGN", "SYMMRELU", "GAUSS", "FTANH")

MAX_FIELD = 1 << 20  # widths, filters and kernel sizes above this are typos, not models


@dataclass(frozen=True)
class Token:
    """One layer token of a layout string, with where it sits."""

    text: str
    index: int  # position among the layers of its part
    offset: int  # character offset in the whole layout string
    part: str  # "model", "encoder", "decoder", "generator" or "discriminator"

    @property
    def fields(self) -> list[str]:
        return [f.strip() for f in self.text.split("|")]

    def error(self, rule: str) -> LayoutError:
        where = "" if self.part == "model" else f" ({self.part})"
        return LayoutError(f"token {self.index} {self.text!r} at offset {self.offset}{where}: "
                           f"{rule}", token=self.text, index=self.index, offset=self.offset,
                           rule=rule)


# ---------------------------------------------------------------- splitting the string


def _split_layers(text: str, base: int, part: str) -> list[Token]:
    tokens: list[Token] = []
    start = 0
    for i, piece in enumerate(text.split(",")):
        lead = len(piece) - len(piece.lstrip())
        tokens.append(Token(piece.strip(), i, base + start + lead, part))
        start += len(piece) + 1
    for tok in tokens:
        if not tok.text:
            raise tok.error("empty layer: two commas in a row, or a comma at an end")
    return tokens


_AE = re.compile(r"^\s*encoder\s*=\s*\{(?P<enc>[^{}]*)\}\s*,?\s*decoder\s*=\s*\{(?P<dec>[^{}]*)\}"
                 r"\s*$", re.IGNORECASE)


def parse(layout: str) -> tuple[str, dict[str, list[Token]]]:
    """Split a layout string into its parts' tokens; return (kind, {part: tokens})."""
    if not isinstance(layout, str):
        raise LayoutError(f"a layout must be a string, but got {type(layout).__name__} "
                          f"{layout!r}", rule="layout is a string")
    layout, base = layout_value(layout)
    if not layout.strip():
        raise LayoutError("the layout string is empty; give layers such as 'DENSE|64|RELU'",
                          rule="layout is not empty")
    if "{" in layout or "}" in layout or "=" in layout:
        m = _AE.match(layout)
        if m is None:
            raise LayoutError(f"layout {layout!r} uses braces or '=' but is not of the form "
                              "'Encoder={...}Decoder={...}'", offset=base,
                              rule="autoencoder form Encoder={...}Decoder={...}")
        return "autoencoder", {
            "encoder": _split_layers(m["enc"], base + m.start("enc"), "encoder"),
            "decoder": _split_layers(m["dec"], base + m.start("dec"), "decoder")}
    if "##" in layout:
        gen, sep, disc = layout.partition("##")
        if "##" in disc:
            raise LayoutError(f"layout {layout!r} has more than one '##'; a GAN is "
                              "'generator##discriminator'", offset=base + layout.rindex("##"),
                              rule="one '##' in a GAN layout")
        return "gan", {"generator": _split_layers(gen, base, "generator"),
                       "discriminator": _split_layers(disc, base + len(gen) + len(sep),
                                                      "discriminator")}
    return "sequential", {"model": _split_layers(layout, base, "model")}


# ---------------------------------------------------------------- reading fields


def _int(tok: Token, value: str, what: str, rule: str, low: int = 1) -> int:
    if not re.fullmatch(r"[+]?\d+", value):
        raise tok.error(f"{rule}; {what} {value!r} is not an integer")
    n = int(value)
    if not low <= n <= MAX_FIELD:
        raise tok.error(f"{rule}; {what} must be in [{low}, {MAX_FIELD}], got {n}")
    return n


def _float(tok: Token, value: str, what: str, rule: str, low: float, high: float) -> float:
    try:
        x = float(value)
    except ValueError:
        raise tok.error(f"{rule}; {what} {value!r} is not a number") from None
    if not (math.isfinite(x) and low <= x <= high):
        raise tok.error(f"{rule}; {what} must be in [{low}, {high}], got {value}")
    return x


def _activation(tok: Token, name: str, rule: str) -> str:
    act = name.upper()
    if act not in ACTIVATIONS:
        raise tok.error(f"{rule}; unknown activation {name!r} (known: {', '.join(ACTIVATIONS)})")
    return act


def _is_int(value: str) -> bool:
    return bool(re.fullmatch(r"[+]?\d+", value))


# ---------------------------------------------------------------- one rule per layer


def _dense(tok: Token, f: list[str]) -> dict[str, Any]:
    rule = "DENSE needs an integer width and an optional activation, e.g. DENSE|64|RELU"
    if not 1 <= len(f) <= 2:
        raise tok.error(f"{rule}, got {len(f)} fields")
    # a field is a width (an integer, or a formula in N as TMVA allows) or an activation
    widths = [v for v in f if FORMULA.fullmatch(v) and v.upper() not in ACTIVATIONS]
    others = [v for v in f if v not in widths]
    if len(widths) != 1:
        raise tok.error(f"{rule}; found {len(widths)} width fields in {f}")
    act = _activation(tok, others[0], rule) if others else "TANH"
    text = widths[0]
    if _is_int(text):  # 0 is TMVA's output layer, resolved once the outputs are known
        return {"units": _int(tok, text, "width", rule, 0), "act": act}
    if re.fullmatch(r"[0-9. +\-]+", text):
        raise tok.error(f"{rule}; width {text!r} is not an integer")
    width_formula(tok, text, rule)
    return {"units": text, "act": act}


def _conv(tok: Token, f: list[str], name: str) -> dict[str, Any]:
    rule = (f"{name} needs depth|fh|fw|sh|sw, optional padding ph|pw and an optional "
            f"activation, e.g. {name}|16|3|3|1|1|1|1|RELU")
    act = "TANH"
    if f and not _is_int(f[-1]):
        act = _activation(tok, f[-1], rule)
        f = f[:-1]
    if len(f) not in (5, 7):
        raise tok.error(f"{rule}; got {len(f)} integer fields")
    depth, fh, fw, sh, sw = (_int(tok, v, w, rule) for v, w in
                             zip(f[:5], ("depth", "fh", "fw", "sh", "sw"), strict=True))
    ph, pw = (_int(tok, v, w, rule, 0) for v, w in zip(f[5:], ("ph", "pw"), strict=True)) \
        if len(f) == 7 else (0, 0)
    return {"depth": depth, "kernel": (fh, fw), "stride": (sh, sw), "padding": (ph, pw),
            "act": act}


def _maxpool(tok: Token, f: list[str]) -> dict[str, Any]:
    rule = "MAXPOOL needs 4 integer fields kh|kw|sh|sw"
    if len(f) != 4:
        raise tok.error(f"{rule}, got {len(f)}")
    kh, kw, sh, sw = (_int(tok, v, w, rule) for v, w in zip(f, ("kh", "kw", "sh", "sw"),
                                                             strict=True))
    return {"kernel": (kh, kw), "stride": (sh, sw)}


def _reshape(tok: Token, f: list[str]) -> dict[str, Any]:
    rule = "RESHAPE needs d|h|w and an optional FLAT, e.g. RESHAPE|1|1|9408|FLAT, or RESHAPE|FLAT"
    flat = bool(f) and f[-1].upper() == "FLAT"
    dims = f[:-1] if flat else f
    if flat and not dims:
        return {"dims": None, "flat": True}
    if len(dims) != 3:
        raise tok.error(f"{rule}; got {len(dims)} dimension fields")
    return {"dims": tuple(_int(tok, v, w, rule) for v, w in zip(dims, "dhw", strict=True)),
            "flat": flat}


def _padding(tok: Token, f: list[str]) -> dict[str, Any]:
    rule = "PADDING2D needs top|bottom|left|right (or one field for all sides)"
    if len(f) not in (1, 4):
        raise tok.error(f"{rule}, got {len(f)} fields")
    pads = [_int(tok, v, "padding", rule, 0) for v in f]
    return {"pad": tuple(pads * 4 if len(pads) == 1 else pads)}


def _upsample(tok: Token, f: list[str]) -> dict[str, Any]:
    rule = "UPSAMPLE needs an integer factor, or fh|fw"
    if len(f) not in (1, 2):
        raise tok.error(f"{rule}, got {len(f)} fields")
    factors = [_int(tok, v, "factor", rule) for v in f]
    return {"factor": (factors[0], factors[-1])}


def _bnorm(tok: Token, f: list[str]) -> dict[str, Any]:
    rule = "BNORM takes an optional momentum in (0, 1) (or -1 for the default) and epsilon"
    if len(f) > 2:
        raise tok.error(f"{rule}, got {len(f)} fields")
    momentum = _float(tok, f[0], "momentum", rule, -1.0, 1.0) if f else -1.0
    if momentum != -1.0 and not 0.0 < momentum < 1.0:
        raise tok.error(f"{rule}; got momentum {f[0]}")
    eps = _float(tok, f[1], "epsilon", rule, 1e-12, 1.0) if len(f) > 1 else 1e-4
    return {"momentum": momentum, "eps": eps}


def _dropout(tok: Token, f: list[str]) -> dict[str, Any]:
    rule = "DROPOUT needs one drop probability p in [0, 1), e.g. DROPOUT|0.3"
    if len(f) != 1:
        raise tok.error(f"{rule}, got {len(f)} fields")
    p = _float(tok, f[0], "p", rule, 0.0, 1.0)
    if p >= 1.0:
        raise tok.error(f"{rule}; got {f[0]}")
    return {"p": p}


def _recurrent(tok: Token, f: list[str], name: str) -> dict[str, Any]:
    extra = "|resetGateAfter" if name == "GRU" else ""
    rule = (f"{name} needs units[|inputSize|timeSteps|rememberState|returnSequence{extra}], "
            "integers")
    if not 1 <= len(f) <= (6 if name == "GRU" else 5):
        raise tok.error(f"{rule}, got {len(f)} fields")
    vals = [_int(tok, v, w, rule, 0 if i else 1) for i, (v, w) in
            enumerate(zip(f, ("units", "inputSize", "timeSteps", "rememberState",
                              "returnSequence", "resetGateAfter"), strict=False))]
    vals += [0] * (6 - len(vals))
    if vals[5] not in (0, 1):  # torch's GRU resets after the product either way
        raise tok.error(f"{rule}; resetGateAfter must be 0 or 1, got {vals[5]}")
    if vals[3] != 0:
        raise tok.error(f"{rule}; rememberState=1 (state carried across batches) is not "
                        "supported, use 0")
    if vals[4] not in (0, 1):
        raise tok.error(f"{rule}; returnSequence must be 0 or 1, got {vals[4]}")
    return {"units": vals[0], "input_size": vals[1], "time_steps": vals[2],
            "return_sequence": bool(vals[4])}


def _act_layer(tok: Token, f: list[str], name: str) -> dict[str, Any]:
    if name in ("LEAKYRELU", "ELU") and len(f) <= 1:
        rule = f"{name} takes one optional number"
        default = 0.2 if name == "LEAKYRELU" else 1.0
        return {"act": name, "arg": _float(tok, f[0], "parameter", rule, 0.0, 100.0)
                if f else default}
    if f:
        raise tok.error(f"activation {name} takes no fields, got {len(f)}")
    return {"act": name}


def read_token(tok: Token) -> tuple[str, dict[str, Any]]:
    """Read the layer kind and checked parameters of one token (shapes not yet known)."""
    fields = tok.fields
    name, rest = fields[0].upper(), fields[1:]
    if FORMULA.fullmatch(fields[0]) and name not in ACTIVATIONS:
        return "DENSE", _dense(tok, fields)  # TMVA's old DNN form: "64|RELU", "N|TANH"
    if name == "DENSE":
        return name, _dense(tok, rest)
    if name in ("CONV", "DECONV"):
        return name, _conv(tok, rest, name)
    if name == "MAXPOOL":
        return name, _maxpool(tok, rest)
    if name == "RESHAPE":
        return name, _reshape(tok, rest)
    if name in ("FLAT", "FLATTEN"):
        if rest:
            raise tok.error(f"FLAT takes no fields, got {len(rest)}")
        return "RESHAPE", {"dims": None, "flat": True}
    if name == "PADDING2D":
        return name, _padding(tok, rest)
    if name == "UPSAMPLE":
        return name, _upsample(tok, rest)
    if name == "BNORM":
        return name, _bnorm(tok, rest)
    if name == "DROPOUT":
        return name, _dropout(tok, rest)
    if name in ("RNN", "LSTM", "GRU"):
        return name, _recurrent(tok, rest, name)
    if name in ACTIVATIONS:
        if rest and name not in ("LEAKYRELU", "ELU"):  # TMVA's "TANH|100" is a dense layer
            return "DENSE", _dense(tok, fields)
        return "ACT", _act_layer(tok, rest, name)
    known = "DENSE CONV DECONV MAXPOOL RESHAPE FLAT PADDING2D UPSAMPLE BNORM DROPOUT RNN LSTM GRU"
    raise tok.error(f"unknown layer {fields[0]!r}; known layers: {known} and the "
                    f"activations {' '.join(ACTIVATIONS)}")
