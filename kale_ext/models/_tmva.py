"""What TMVA users write, read as TMVA reads it: option strings, width formulas, layouts.

TMVA's ``MethodDL`` and ``MethodAE`` take their network as option strings:
``InputLayout=1|16|16`` and ``Layout=CONV|10|3|3|1|1|1|1|RELU,...,DENSE|1|LINEAR``, inside
a colon-separated list of options. A dense layer's width may be a formula in ``N``, the
number of input variables (``DENSE|(N+100)*2|SOFTSIGN``, evaluated with TFormula and
truncated to an integer), and a width of 0 is the output layer. :data:`TMVA_KEYWORDS`
lists every keyword of TMVA's layouts and how this package reads it.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, Any

from kale_ext._errors import LayoutError

if TYPE_CHECKING:
    from kale_ext.models._layout import Token

# the activations TMVA itself knows: a bare one ending a layout is TMVA's output layer
TMVA_ACTIVATIONS = ("RELU", "TANH", "FTANH", "SYMMRELU", "SOFTSIGN", "SIGMOID", "LINEAR",
                    "GAUSS")
MAX_WIDTH = 1 << 20

_LAYOUT_KEY = re.compile(r"(?:^|:)\s*layout\s*=", re.IGNORECASE)
_INPUT_KEY = re.compile(r"^\s*inputlayout\s*=", re.IGNORECASE)
FORMULA = re.compile(r"[0-9Nn+\-*/(). ]+")
_FORMULA_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Add, ast.Sub, ast.Mult,
                  ast.Div, ast.USub, ast.UAdd, ast.Constant, ast.Name, ast.Load)


def layout_value(text: str) -> tuple[str, int]:
    """Return the layout and its offset in ``text``: TMVA's "Layout=" and option strings.

    ``"Layout=DENSE|64"`` gives ``"DENSE|64"``; in ``"!H:V:Layout=...:TrainingStrategy=..."``
    the value runs from "Layout=" to the next ':' (a layout has no ':').
    """
    m = _LAYOUT_KEY.search(text)
    if m is None:
        return text, 0
    end = text.find(":", m.end())
    return (text[m.end():] if end < 0 else text[m.end():end]), m.end()


def input_layout(text: str) -> tuple[int, ...]:
    """Return the input shape of a TMVA ``InputLayout`` ("1|16|16", "InputLayout=10|30").

    TMVA's dense networks read ``1|1|N`` (depth 1, height 1): that is N flat features.
    """
    fields = _INPUT_KEY.sub("", text).split("|")
    if not all(re.fullmatch(r"\s*\d+\s*", f) for f in fields):
        raise LayoutError(f"input_shape {text!r} is not a TMVA InputLayout such as "
                          "'1|16|16' (depth|height|width) or '10|30' (time steps|features)",
                          rule="input shape (C, H, W), (T, F) or (F,)")
    dims = tuple(int(f) for f in fields)
    return dims[2:] if len(dims) == 3 and dims[:2] == (1, 1) else dims


def width_formula(tok: Token, text: str, rule: str) -> ast.Expression:
    """Check a TMVA width formula such as ``(N+100)*2``: numbers, N, + - * / and brackets."""
    try:
        tree = ast.parse(text.replace("n", "N"), mode="eval")
    except SyntaxError:
        raise tok.error(f"{rule}; width {text!r} is not a formula in N") from None
    for node in ast.walk(tree):
        if not isinstance(node, _FORMULA_NODES) or (
                isinstance(node, ast.Name) and node.id != "N") or (
                isinstance(node, ast.Constant) and not isinstance(node.value, int | float)):
            raise tok.error(f"{rule}; width {text!r} is not a formula in N")
    return tree


def eval_width(tok: Token, text: str, n_inputs: int) -> int:
    """Return a width formula's value for ``N = n_inputs``, truncated towards 0 like TMVA."""
    rule = "DENSE width formula"
    tree = width_formula(tok, text, rule)

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            return float(n_inputs)
        if isinstance(node, ast.UnaryOp):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if not isinstance(node, ast.BinOp):
            raise tok.error(f"{rule} {text!r}: cannot evaluate {ast.dump(node)}")
        left, right = value(node.left), value(node.right)
        if isinstance(node.op, ast.Div):
            if right == 0:
                raise tok.error(f"{rule} {text!r} divides by zero for N = {n_inputs}")
            return left / right
        if isinstance(node.op, ast.Add):
            return left + right
        return left - right if isinstance(node.op, ast.Sub) else left * right

    try:
        result = value(tree)
    except OverflowError:
        result = -1.0  # out of range below
    if not -1 < result < MAX_WIDTH + 1:  # also refuses inf and nan
        raise tok.error(f"DENSE needs an integer width and an optional activation; width "
                        f"must be in [1, {MAX_WIDTH}], got {result:g} from {text!r} with "
                        f"N = {n_inputs}")
    return int(result)  # truncated towards 0, as TMVA does


def _row(keyword: str, tmva: str, here: str, supported: str, example: str = "",
         shape: tuple[int, ...] | str = ()) -> dict[str, Any]:
    return {"keyword": keyword, "TMVA": tmva, "here": here, "supported": supported,
            "example": example, "input_shape": shape}


# Every keyword of TMVA's MethodDL / MethodAE layouts and options that shape a network.
# "yes": built as TMVA builds it; "differs": accepted, built as described; "no": refused
# with an error that says so. An example, where given, builds (tests check it).
TMVA_KEYWORDS: list[dict[str, Any]] = [
    _row("Layout=", "option holding the layout", "the prefix and whole option strings "
         "('!H:V:Layout=...:TrainingStrategy=...') are read", "yes",
         "!H:V:ErrorStrategy=CROSSENTROPY:Layout=DENSE|64|TANH,DENSE|1|LINEAR:"
         "TrainingStrategy=LearningRate=1e-3", (7,)),
    _row("InputLayout", "depth|height|width of the input", "input_shape may be the same "
         "string; 1|1|N is N flat features", "yes", "DENSE|16|RELU,DENSE|1|LINEAR",
         "InputLayout=1|1|7"),
    _row("BatchLayout", "how batches are laid out in memory", "not needed: torch batches "
         "are (N, *input_shape)", "no"),
    _row("DENSE|width|act", "dense layer, width and activation in any order",
         "the same; TANH|64 and 64|TANH without DENSE too", "yes",
         "DENSE|64|TANH,TANH|32,32|RELU,DENSE|1|LINEAR", (7,)),
    _row("width formula in N", "DENSE|(N+100)*2|SOFTSIGN: TFormula of the number of "
         "inputs, truncated", "the same (+ - * / and brackets)", "yes",
         "DENSE|(N+100)*2|SOFTSIGN,DENSE|N/2|RELU,DENSE|1|LINEAR", (7,)),
    _row("DENSE|0|act", "output layer: as many units as outputs", "the same when the "
         "caller gives outputs (classifiers do); the input's size at the end of a decoder",
         "yes", "DENSE|64|TANH,DENSE|0|LINEAR", (7,)),
    _row("bare activation (…,LINEAR)", "a dense layer (TMVA's old DNN spelling); width 0 "
         "= outputs", "ending the layout, where the shape is not the output's yet: TMVA's "
         "output layer; elsewhere a standalone activation layer", "differs",
         "DENSE|64|TANH,LINEAR", (7,)),
    _row("CONV|d|fh|fw|sh|sw|ph|pw|act", "2-D convolution, fields by position",
         "the same; padding optional, the activation read wherever it is (TMVA reads it "
         "at position 8 only)", "yes",
         "CONV|10|3|3|1|1|1|1|RELU,MAXPOOL|2|2|1|1,RESHAPE|FLAT,DENSE|1|LINEAR", (1, 16, 16)),
    _row("MAXPOOL|fh|fw|sh|sw", "max pooling", "the same", "yes",
         "CONV|4|2|2|1|1|TANH,MAXPOOL|6|6|1|1,RESHAPE|1|1|1764|FLAT", (1, 27, 27)),
    _row("RESHAPE|d|h|w[|FLAT]", "reshape, or flatten with FLAT", "the same; "
         "RESHAPE|FLAT and FLAT too", "yes", "RESHAPE|1|8|8,CONV|2|3|3|1|1|1|1|RELU,"
         "RESHAPE|FLAT,DENSE|1|LINEAR", (64,)),
    _row("BNORM|momentum|epsilon", "batch normalisation, -1 = default momentum",
         "the same (TMVA/Keras momentum 0.99 is torch's 0.01)", "yes",
         "DENSE|32|RELU,BNORM,DENSE|16|RELU,BNORM|0.99|0.001,DENSE|1|LINEAR", (7,)),
    _row("RNN / LSTM / GRU|units|inputSize|timeSteps|rememberState|returnSequence",
         "recurrent layers", "the same; rememberState=1 (state kept across batches) is "
         "refused", "yes", "LSTM|10|30|10|0|1,RESHAPE|FLAT,DENSE|64|TANH,LINEAR",
         "InputLayout=10|30"),
    _row("GRU …|resetGateAfter", "reset gate before (0, TMVA's CPU) or after (1, cuDNN) "
         "the matrix product", "accepted; torch's GRU applies it after (1)", "differs",
         "GRU|8|0|0|0|0|0,DENSE|0|LINEAR", (5, 3)),
    _row("RELU TANH FTANH SYMMRELU SOFTSIGN SIGMOID LINEAR GAUSS", "activations",
         "the same (FTANH is tanh)", "yes",
         "DENSE|8|FTANH,DENSE|8|SYMMRELU,DENSE|8|GAUSS,DENSE|8|SOFTSIGN,DENSE|1|SIGMOID",
         (7,)),
    _row("Encoder={…}Decoder={…}", "MethodAE: an encoder and a decoder",
         "the same; a decoder ending flat with the input's size is reshaped to the input",
         "yes", "Encoder={RESHAPE|FLAT,DENSE|(N+100)*2|SOFTSIGN}Decoder={DENSE|0|LINEAR}",
         (1, 4, 4)),
    _row("TrainingStrategy, ErrorStrategy, WeightInitialization, Architecture",
         "training options", "not part of a layout: the trainables' config keys "
         "(lr, optimizer, epochs, batch_size, device)", "no"),
    _row("DECONV UPSAMPLE PADDING2D DROPOUT LEAKYRELU ELU GELU SOFTMAX IDENTITY, ##",
         "not TMVA keywords", "this package's additions (transposed convolutions, "
         "standalone activations, GANs)", "differs",
         "DENSE|128|RELU,RESHAPE|8|4|4,DECONV|1|4|4|2|2|1|1|RELU##"
         "CONV|4|4|4|2|2|1|1|LEAKYRELU,FLAT,DENSE|1|LINEAR", (16,)),
]
