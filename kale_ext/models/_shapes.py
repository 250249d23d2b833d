"""Shape inference for layout strings: every layer checked against its input (no torch).

Shapes exclude the batch dimension: ``(C, H, W)`` images, ``(T, F)`` sequences, ``(F,)``
flat features. The grammar is in :mod:`kale_ext.models._layout`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kale_ext._errors import LayoutError
from kale_ext.models._layout import Shape, Token, parse, read_token
from kale_ext.models._tmva import TMVA_ACTIVATIONS, eval_width, input_layout

MAX_ELEMENTS = 1 << 26  # per-sample output size of one layer
MAX_PARAMS = 200_000_000  # weights of one layer: guards against allocating by mistake


@dataclass(frozen=True)
class LayerPlan:
    """A checked layer: its kind, parameters and input and output shapes."""

    token: Token
    kind: str
    params: dict[str, Any]
    in_shape: Shape
    out_shape: Shape
    weights: int


@dataclass
class Plan:
    """A checked layout: ``kind`` is "sequential", "autoencoder" or "gan"."""

    kind: str
    input_shape: Shape
    parts: dict[str, list[LayerPlan]] = field(default_factory=dict)


def _need_image(tok: Token, kind: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise tok.error(f"{kind} needs an image input (C, H, W), got shape {shape}; "
                        "use RESHAPE|d|h|w first")
    return shape[0], shape[1], shape[2]


def _sequence(tok: Token, kind: str, shape: Shape) -> tuple[int, int]:
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 3 and shape[0] == 1:
        return shape[1], shape[2]
    raise tok.error(f"{kind} needs a sequence input (T, F) or (1, T, F), got shape {shape}")


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def out_shape(tok: Token, kind: str, p: dict[str, Any], shape: Shape) -> tuple[Shape, int]:
    """Compute a layer's output shape on input ``shape`` and its weight count, or LayoutError."""
    size = math.prod(shape)
    if kind == "DENSE":
        if len(shape) not in (1, 2):
            raise tok.error(f"DENSE needs a flat input, got shape {shape}; insert FLAT or "
                            f"RESHAPE|d|h|w|FLAT before it")
        return (*shape[:-1], p["units"]), (shape[-1] + 1) * p["units"]
    if kind in ("CONV", "DECONV"):
        c, h, w = _need_image(tok, kind, shape)
        (fh, fw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
        if kind == "CONV":
            if fh > h + 2 * ph or fw > w + 2 * pw:
                raise tok.error(f"CONV filter {fh}x{fw} is larger than the padded input "
                                f"{h + 2 * ph}x{w + 2 * pw} (input shape {shape})")
            oh, ow = _conv_out(h, fh, sh, ph), _conv_out(w, fw, sw, pw)
        else:
            oh, ow = (h - 1) * sh - 2 * ph + fh, (w - 1) * sw - 2 * pw + fw
            if oh < 1 or ow < 1:
                raise tok.error(f"DECONV padding {ph}x{pw} leaves no output on input {shape}")
        return (p["depth"], oh, ow), (c * fh * fw + 1) * p["depth"]
    if kind == "MAXPOOL":
        c, h, w = _need_image(tok, kind, shape)
        (kh, kw), (sh, sw) = p["kernel"], p["stride"]
        if kh > h or kw > w:
            raise tok.error(f"MAXPOOL window {kh}x{kw} is larger than the input {h}x{w} "
                            f"(input shape {shape})")
        return (c, _conv_out(h, kh, sh, 0), _conv_out(w, kw, sw, 0)), 0
    if kind == "RESHAPE":
        dims = p["dims"]
        if dims is not None and math.prod(dims) != size:
            raise tok.error(f"RESHAPE to {'x'.join(map(str, dims))} = {math.prod(dims)} "
                            f"elements, but the input {shape} has {size}")
        return ((size,) if p["flat"] else tuple(dims)), 0
    if kind == "PADDING2D":
        c, h, w = _need_image(tok, kind, shape)
        top, bottom, left, right = p["pad"]
        return (c, h + top + bottom, w + left + right), 0
    if kind == "UPSAMPLE":
        c, h, w = _need_image(tok, kind, shape)
        return (c, h * p["factor"][0], w * p["factor"][1]), 0
    if kind in ("RNN", "LSTM", "GRU"):
        t, f = _sequence(tok, kind, shape)
        for key, actual in (("input_size", f), ("time_steps", t)):
            if p[key] not in (0, actual):
                raise tok.error(f"{kind} {key} {p[key]} does not match the input shape "
                                f"{shape} (T={t}, F={f}); use 0 to take it from the input")
        gates = {"RNN": 1, "LSTM": 4, "GRU": 3}[kind]
        units = p["units"]
        shape_out = (t, units) if p["return_sequence"] else (units,)
        return shape_out, gates * units * (f + units + 2)
    if kind == "BNORM":
        return shape, 2 * (shape[0] if len(shape) == 3 else shape[-1])
    return shape, 0  # DROPOUT, ACT


def _tmva_output(tok: Token, kind: str, params: dict[str, Any], shape: Shape, last: bool,
                 n_inputs: int, outputs: int | None) -> tuple[str, dict[str, Any]]:
    """Resolve TMVA's width formulas and its output layer (DENSE|0, a bare final activation)."""
    if kind == "ACT" and last and outputs is not None and params["act"] in TMVA_ACTIVATIONS \
            and len(tok.fields) == 1 and len(shape) in (1, 2) and shape[-1:] != (outputs,):
        return "DENSE", {"units": outputs, "act": params["act"]}  # TMVA's "...,LINEAR"
    if kind != "DENSE":
        return kind, params
    units = params["units"]
    if isinstance(units, str):
        units = eval_width(tok, units, n_inputs)
    if units == 0:
        if not last or outputs is None:
            where = ("only the last layer can be TMVA's output layer" if not last else
                     "this model's number of outputs is not known here; pass outputs=N")
            raise tok.error(f"DENSE needs an integer width and an optional activation; width "
                            f"must be in [1, 1048576], got 0 (TMVA's output layer: {where})")
        units = outputs
    return kind, {**params, "units": units}


def plan_layers(tokens: list[Token], shape: Shape, *, n_inputs: int | None = None,
                outputs: int | None = None) -> list[LayerPlan]:
    """Read and shape-check a list of tokens starting from ``shape``.

    ``n_inputs`` is TMVA's N in width formulas (default: the values in ``shape``);
    ``outputs`` the width of TMVA's output layer (``DENSE|0`` or a bare activation
    ending the list), unknown when None.
    """
    n_inputs = math.prod(shape) if n_inputs is None else n_inputs
    plans: list[LayerPlan] = []
    for i, tok in enumerate(tokens):
        kind, params = _tmva_output(tok, *read_token(tok), shape, i == len(tokens) - 1,
                                    n_inputs, outputs)
        new, weights = out_shape(tok, kind, params, shape)
        if min(new) < 1:
            raise tok.error(f"{kind} turns input {shape} into an empty output {new}")
        if math.prod(new) > MAX_ELEMENTS:
            raise tok.error(f"{kind} output {new} has {math.prod(new)} elements per sample "
                            f"(limit {MAX_ELEMENTS}); shrink the layer")
        if weights > MAX_PARAMS:
            raise tok.error(f"{kind} would have {weights} weights (limit {MAX_PARAMS}); "
                            "shrink the layer or pool/stride before it")
        plans.append(LayerPlan(tok, kind, params, shape, new, weights))
        shape = new
    return plans


def to_input_shape(layers: list[LayerPlan], shape: Shape) -> list[LayerPlan]:
    """Return ``layers``, reshaped to the input if they end flat with its number of values.

    TMVA compares an autoencoder's output with its input flattened, so such a decoder
    reconstructs the input; here the reshape is made explicit (a last, implicit layer).
    """
    last = layers[-1]
    if last.out_shape == shape or last.out_shape != (math.prod(shape),):
        return layers
    text = f"RESHAPE|{'|'.join(map(str, shape))}"
    tok = Token(f"{text} (implicit)", last.token.index + 1,
                last.token.offset + len(last.token.text), last.token.part)
    return [*layers, LayerPlan(tok, "RESHAPE", {"dims": shape, "flat": False},
                               last.out_shape, shape, 0)]


def check_shape(shape: Any) -> Shape:
    """Check an input shape: a tuple of positive ints, or a TMVA InputLayout string."""
    if isinstance(shape, str):
        shape = input_layout(shape)
    try:
        dims = tuple(int(d) for d in shape)
        ok = all(int(d) == d for d in shape)
    except (TypeError, ValueError):
        dims, ok = (), False
    if not ok or not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise LayoutError(f"input_shape must be 1 to 3 positive ints without the batch "
                          f"dimension, e.g. (1, 28, 28), but got {shape!r}",
                          rule="input shape (C, H, W), (T, F) or (F,)")
    return dims


def plan(layout: str, input_shape: Any, outputs: int | None = None) -> Plan:
    """Parse ``layout`` and check every layer's shapes from ``input_shape``.

    ``outputs`` is the number of outputs a TMVA output layer (``DENSE|0|act`` or a bare
    activation ending the layout) gets; an autoencoder's decoder gets the input's size.
    """
    shape = check_shape(input_shape)
    kind, parts = parse(layout)
    result = Plan(kind, shape)
    size = math.prod(shape)
    wanted = {"model": outputs, "decoder": size, "discriminator": 1}
    current = shape
    for name, tokens in parts.items():
        layers = plan_layers(tokens, current, n_inputs=size, outputs=wanted.get(name))
        if name == "decoder":
            layers = to_input_shape(layers, shape)
        result.parts[name] = layers
        current = layers[-1].out_shape
    if kind == "autoencoder" and current != shape:
        last = result.parts["decoder"][-1].token
        raise last.error(f"an autoencoder's decoder must end at the input shape {shape}, but "
                         f"ends at {current}; end it with RESHAPE|{'|'.join(map(str, shape))}"
                         if len(shape) == 3 else
                         f"an autoencoder's decoder must end at the input shape {shape}, but "
                         f"ends at {current}")
    if kind == "gan" and current != (1,):
        last = result.parts["discriminator"][-1].token
        raise last.error(f"a GAN discriminator must end in one logit, but ends at {current}; "
                         "end it with DENSE|1|LINEAR")
    return result
