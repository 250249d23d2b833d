"""Layout strings: valid ones build modules of the inferred shapes, invalid ones say why."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kale_ext import KaleError
from kale_ext._errors import LayoutError
from kale_ext.models import AutoEncoder, GANPair, build_model, describe

TMVA = "CONV|12|2|2|1|1|TANH,MAXPOOL|6|6|1|1,RESHAPE|1|1|9408|FLAT,DENSE|512|TANH"


def _out(model: torch.nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    model.eval()
    with torch.no_grad():
        return tuple(model(torch.zeros(2, *shape)).shape[1:])


def test_tmva_example_on_a_matching_input() -> None:
    # 34x34 -> conv 2x2 -> 33x33 -> pool 6x6 stride 1 -> 28x28, 12 * 28 * 28 = 9408
    model = build_model(TMVA, (1, 34, 34))
    assert _out(model, (1, 34, 34)) == (512,)
    rows = describe(TMVA, (1, 34, 34))
    assert [r.output_shape for r in rows] == [(12, 33, 33), (12, 28, 28), (9408,), (512,)]
    assert sum(r.params for r in rows) == sum(p.numel() for p in model.parameters())
    padded = build_model("PADDING2D|1|1|1|1," + TMVA, (1, 32, 32))
    assert _out(padded, (1, 32, 32)) == (512,)


@pytest.mark.parametrize(("layout", "shape", "expected"), [
    ("CONV|8|3|3|1|1|1|1|RELU,MAXPOOL|2|2|2|2,FLAT,DENSE|10|LINEAR", (1, 8, 8), (10,)),
    ("CONV|4|3|3|2|2|RELU", (3, 9, 9), (4, 4, 4)),
    ("DECONV|2|4|4|2|2|1|1|SIGMOID", (3, 4, 4), (2, 8, 8)),
    ("UPSAMPLE|2,PADDING2D|1,BNORM|0.99|0.001,DROPOUT|0.5", (2, 3, 3), (2, 8, 8)),
    ("UPSAMPLE|2|3", (1, 2, 2), (1, 4, 6)),
    ("LSTM|6|4|5|0|1,GRU|3", (5, 4), (3,)),
    ("RNN|7,DENSE|2|SOFTMAX", (1, 5, 4), (2,)),
    ("LSTM|6|0|0|0|1,BNORM,DENSE|2|LINEAR", (5, 4), (5, 2)),
    ("64|RELU,TANH|32,DENSE|1|SIGMOID", (20,), (1,)),
    ("dense|8|leakyrelu, LEAKYRELU|0.1, ELU, GELU, SOFTSIGN, SYMMRELU, GAUSS, IDENTITY",
     (3,), (8,)),
    ("CONV|3|1|1|1|1|SOFTMAX,RESHAPE|1|3|4", (3, 2, 2), (1, 3, 4)),
])
def test_valid_layouts_have_the_inferred_shapes(layout: str, shape: tuple[int, ...],
                                                expected: tuple[int, ...]) -> None:
    model = build_model(layout, shape)
    assert _out(model, shape) == expected
    assert describe(layout, shape)[-1].output_shape == expected


def test_activation_is_applied() -> None:
    model = build_model("DENSE|4|SIGMOID", (3,))
    out = model(torch.randn(16, 3) * 100).detach()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    softmax = build_model("DENSE|4|SOFTMAX", (3,))
    assert torch.allclose(softmax(torch.randn(5, 3)).sum(1), torch.ones(5))


def test_autoencoder_layout() -> None:
    layout = ("Encoder={CONV|4|3|3|2|2|1|1|RELU,FLAT,DENSE|8|RELU}"
              "Decoder={DENSE|64|RELU,RESHAPE|4|4|4,DECONV|1|4|4|2|2|1|1|SIGMOID}")
    model = build_model(layout, (1, 8, 8))
    assert isinstance(model, AutoEncoder)
    assert _out(model, (1, 8, 8)) == (1, 8, 8)
    assert tuple(model.encode(torch.zeros(3, 1, 8, 8)).shape) == (3, 8)
    parts = [r.part for r in describe(layout, (1, 8, 8))]
    assert parts == ["encoder"] * 3 + ["decoder"] * 3


def test_gan_layout() -> None:
    layout = ("DENSE|128|RELU,RESHAPE|8|4|4,DECONV|1|4|4|2|2|1|1|RELU"
              "##CONV|4|4|4|2|2|1|1|LEAKYRELU,FLAT,DENSE|1|LINEAR")
    gan = build_model(layout, (16,))
    assert isinstance(gan, GANPair)
    assert tuple(gan.sample(5).shape) == (5, 1, 8, 8)
    assert _out(gan, (16,)) == (1,)


@pytest.mark.parametrize(("layout", "shape", "index", "offset", "words"), [
    ("CONV|12|2|2|1|1|TANH,MAXPOOL|6|6|1,FLAT", (1, 34, 34), 1, 21,
     "MAXPOOL needs 4 integer fields kh|kw|sh|sw, got 3"),
    ("DENSE|64", (1, 8, 8), 0, 0, "insert FLAT"),
    ("FLAT, DENSE|0|RELU", (4,), 1, 6, "width must be in"),
    ("FLAT,BOGUS|3", (4,), 1, 5, "unknown layer 'BOGUS'"),
    ("CONV|2|9|9|1|1", (1, 8, 8), 0, 0, "larger than the padded input"),
    ("FLAT,RESHAPE|2|2|2", (1, 3, 3), 1, 5, "9"),
    ("LSTM|4|3", (5, 4), 0, 0, "input_size 3 does not match"),
    ("DROPOUT|1.5", (4,), 0, 0, "DROPOUT needs one drop probability"),
    ("DENSE|4,,DENSE|2", (4,), 1, 8, "empty layer"),
    ("DENSE|4|WIGGLE", (4,), 0, 0, "unknown activation 'WIGGLE'"),
    ("Encoder={FLAT,DENSE|3}Decoder={DENSE|5}", (1, 2, 2), 0, 31, "RESHAPE|1|2|2"),
    ("DENSE|8##DENSE|2", (4,), 0, 9, "one logit"),
])
def test_errors_name_token_position_and_rule(layout: str, shape: tuple[int, ...], index: int,
                                             offset: int, words: str) -> None:
    with pytest.raises(LayoutError) as info:
        build_model(layout, shape)
    err = info.value
    assert (err.index, err.offset) == (index, offset)
    assert layout[offset:].startswith(err.token)
    assert words in str(err) and f"token {index} {err.token!r} at offset {offset}" in str(err)
    assert isinstance(err, KaleError) and isinstance(err, ValueError)


@pytest.mark.parametrize("layout", ["", "  ", "a##b##c", "Encoder={DENSE|3}", "x=1"])
def test_malformed_layouts(layout: str) -> None:
    with pytest.raises(LayoutError):
        build_model(layout, (4,))


@pytest.mark.parametrize("shape", [(), (0, 3), (1, 2, 3, 4), ("a",), (2.5,), None])
def test_bad_input_shapes(shape: object) -> None:
    with pytest.raises(LayoutError, match="input_shape"):
        build_model("DENSE|3", shape)  # type: ignore[arg-type]


NAMES = ["DENSE", "CONV", "DECONV", "MAXPOOL", "RESHAPE", "FLAT", "PADDING2D", "UPSAMPLE",
         "BNORM", "DROPOUT", "LSTM", "RNN", "GRU", "RELU", "LEAKYRELU", "SOFTMAX", "X", ""]
FIELDS = st.one_of(st.integers(-3, 40).map(str), st.sampled_from(
    ["TANH", "RELU", "FLAT", "0.5", "1e3", "", " ", "nan", "-1", "99999999", "x", "{", "##"]))
TOKENS = st.builds(lambda n, f: "|".join([n, *f]), st.sampled_from(NAMES),
                   st.lists(FIELDS, max_size=9))
LAYOUTS = st.one_of(
    st.lists(TOKENS, min_size=1, max_size=6).map(",".join),
    st.tuples(st.lists(TOKENS, min_size=1, max_size=3), st.lists(TOKENS, min_size=1,
              max_size=3)).map(lambda p: f"Encoder={{{','.join(p[0])}}}Decoder={{"
                               f"{','.join(p[1])}}}"),
    st.tuples(st.lists(TOKENS, min_size=1, max_size=3), st.lists(TOKENS, min_size=1,
              max_size=3)).map(lambda p: ",".join(p[0]) + "##" + ",".join(p[1])),
    st.text(max_size=40),
)
SHAPES = st.sampled_from([(1, 8, 8), (3, 5, 7), (6, 4), (10,)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LAYOUTS, SHAPES)
def test_random_layouts_build_or_raise_layout_error(layout: str, shape: tuple[int, ...]) -> None:
    try:
        rows = describe(layout, shape)
    except LayoutError as err:
        assert str(err)
        return
    assert rows  # a layout that passes the checks builds with the shapes it described
    model = build_model(layout, shape)
    if sum(p.numel() for p in model.parameters()) < 1_000_000 and \
            max(torch.Size(r.output_shape).numel() for r in rows) < 100_000:
        out = model.eval()(torch.zeros(2, *shape))
        assert tuple(out.shape[1:]) == rows[-1].output_shape


SMALL = st.integers(1, 4).map(str)
ACT = st.sampled_from(["RELU", "TANH", "LINEAR", "SIGMOID"])
GOOD_TOKENS = st.one_of(
    st.builds(lambda u, a: f"DENSE|{u}|{a}", SMALL, ACT),
    st.builds(lambda d, k, s, p, a: f"CONV|{d}|{k}|{k}|{s}|{s}|{p}|{p}|{a}", SMALL, SMALL,
              SMALL, st.integers(0, 2), ACT),
    st.builds(lambda d, k, s, a: f"DECONV|{d}|{k}|{k}|{s}|{s}|{a}", SMALL, SMALL, SMALL, ACT),
    st.builds(lambda k, s: f"MAXPOOL|{k}|{k}|{s}|{s}", SMALL, SMALL),
    st.sampled_from(["FLAT", "BNORM", "DROPOUT|0.2", "UPSAMPLE|2", "PADDING2D|1", "RELU",
                     "LSTM|3", "GRU|2|0|0|0|1", "RESHAPE|1|2|2", "SOFTMAX"]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(GOOD_TOKENS, min_size=1, max_size=5).map(",".join), SHAPES)
def test_plausible_layouts_run_with_the_described_shapes(layout: str,
                                                         shape: tuple[int, ...]) -> None:
    try:
        rows = describe(layout, shape)
    except LayoutError:
        return  # e.g. DENSE on an image: the rule is reported, not a torch error
    model = build_model(layout, shape).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, *shape))
    assert tuple(out.shape[1:]) == rows[-1].output_shape
    assert sum(r.params for r in rows) == sum(p.numel() for p in model.parameters())


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["DENSE", "CONV", "DECONV", "MAXPOOL", "PADDING2D", "UPSAMPLE",
                        "LSTM", "DROPOUT", "RESHAPE"]),
       st.lists(st.sampled_from(["-1", "2.5", "abc", "", "1e9", "99999999"]),
                min_size=1, max_size=9))
def test_invalid_fields_raise_layout_error(name: str, fields: list[str]) -> None:
    with pytest.raises(LayoutError):
        build_model("|".join([name, *fields]), (2, 6, 6))


def test_layouts_are_plain_strings_for_searches() -> None:
    from kale_ext.search import Space, choice

    layouts = ["PADDING2D|1|1|1|1," + TMVA, "FLAT,DENSE|10|LINEAR"]
    space = Space.from_dict(Space({"layout": choice(layouts), "epochs": 1}).to_dict())
    configs = list(space.grid())
    assert [c["layout"] for c in configs] == layouts
    for config in configs:
        assert describe(config["layout"], (1, 32, 32))[-1].output_shape in {(512,), (10,)}
