"""Layout strings as TMVA users write them build as TMVA would build them."""

from __future__ import annotations

import pytest
import torch

from kale_ext._errors import LayoutError
from kale_ext.models import TMVA_KEYWORDS, build_model, build_vae, describe
from kale_ext.models._classifier import classifier, train_layout_classifier


def _out(model: torch.nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    model.eval()
    with torch.no_grad():
        return tuple(model(torch.zeros(2, *shape)).shape[1:])


CNN = ("CONV|10|3|3|1|1|1|1|RELU,BNORM,CONV|10|3|3|1|1|1|1|RELU,MAXPOOL|2|2|1|1,"
       "RESHAPE|FLAT,DENSE|100|RELU,DENSE|1|LINEAR")


def test_the_tmva_tutorials_layouts() -> None:
    # TMVA_CNN_Classification: InputLayout=1|16|16
    rows = describe(CNN, "InputLayout=1|16|16")
    assert [r.output_shape for r in rows] == [(10, 16, 16), (10, 16, 16), (10, 16, 16),
                                              (10, 15, 15), (2250,), (100,), (1,)]
    assert _out(build_model(CNN, "1|16|16"), (1, 16, 16)) == (1,)
    # TMVA_Higgs_Classification: InputLayout=1|1|7 (seven flat variables)
    dnn = "DENSE|64|TANH,DENSE|64|TANH,DENSE|64|TANH,DENSE|64|TANH,DENSE|1|LINEAR"
    assert _out(build_model(dnn, "1|1|7"), (7,)) == (1,)
    # TMVA_RNN_Classification: InputLayout=10|30, an LSTM returning its sequence, and
    # TMVA's old spelling of the output layer, a bare LINEAR
    rnn = "LSTM|10|30|10|0|1,RESHAPE|FLAT,DENSE|64|TANH,LINEAR"
    rows = describe(rnn, "10|30", outputs=1)
    assert [r.output_shape for r in rows] == [(10, 10), (100,), (64,), (1,)]
    assert rows[-1].kind == "DENSE" and _out(build_model(rnn, (10, 30), 1), (10, 30)) == (1,)


def test_method_defaults_with_width_formulas_and_the_output_layer() -> None:
    # MethodDL's default layout: N is the number of input variables
    rows = describe("DENSE|(N+100)*2|SOFTSIGN,DENSE|0|LINEAR", (7,), outputs=3)
    assert [r.output_shape for r in rows] == [(214,), (3,)]
    assert describe("n/2|RELU,DENSE|N-1", (7,))[0].output_shape == (3,)  # truncated
    # MethodAE's default: the decoder's DENSE|0 has the input's size, reshaped to it
    ae = "Encoder={DENSE|(N+100)*2|SOFTSIGN}Decoder={DENSE|0|LINEAR}"
    assert [r.output_shape for r in describe(ae, "1|1|16")] == [(232,), (16,)]
    ae = "Encoder={RESHAPE|FLAT,DENSE|(N+100)*2|SOFTSIGN}Decoder={DENSE|0|LINEAR}"
    rows = describe(ae, (1, 4, 4))
    assert [(r.part, r.output_shape) for r in rows] == [
        ("encoder", (16,)), ("encoder", (232,)), ("decoder", (16,)), ("decoder", (1, 4, 4))]
    assert rows[-1].token == "RESHAPE|1|4|4 (implicit)" and rows[-1].params == 0
    assert _out(build_model(ae, (1, 4, 4)), (1, 4, 4)) == (1, 4, 4)
    # a decoder ending in a flat DENSE of the input's size: reshaped as TMVA compares it
    flat = "Encoder={RESHAPE|FLAT,DENSE|8|RELU}Decoder={DENSE|32|RELU,DENSE|64|SIGMOID}"
    assert _out(build_model(flat, (1, 8, 8)), (1, 8, 8)) == (1, 8, 8)
    vae = build_vae("Encoder={FLAT,DENSE|16|RELU}Decoder={DENSE|16|RELU,DENSE|0|SIGMOID}",
                    (1, 8, 8), latent_dim=2)
    assert tuple(vae.eval()(torch.zeros(3, 1, 8, 8))[0].shape) == (3, 1, 8, 8)


def test_option_strings_and_spellings() -> None:
    options = ("!H:V:ErrorStrategy=CROSSENTROPY:WeightInitialization=XAVIER:"
               "Layout=DENSE|64|TANH,DENSE|1|LINEAR:"
               "TrainingStrategy=LearningRate=1e-3,Momentum=0.9,BatchSize=32|LearningRate=1e-4")
    assert [r.output_shape for r in describe(options, (7,))] == [(64,), (1,)]
    assert _out(build_model("Layout=TANH|16,16|RELU,FTANH", (4,)), (4,)) == (16,)
    ftanh = build_model("DENSE|3|FTANH", (2,))
    x = torch.randn(5, 2) * 10
    assert torch.allclose(ftanh(x), torch.tanh(ftanh[0][0](x)))
    # a bare activation where the shape is already the output's stays an activation
    assert describe("DENSE|3|LINEAR,SIGMOID", (4,), outputs=3)[-1].kind == "ACT"
    assert describe("DENSE|8|LINEAR,SIGMOID", (4,))[-1].kind == "ACT"  # outputs unknown
    gru = describe("GRU|8|0|0|0|1|1,GRU|4|0|0|0|0|0", (5, 3))
    assert gru[-1].output_shape == (4,)


@pytest.mark.parametrize("row", [r for r in TMVA_KEYWORDS if r["example"]],
                         ids=lambda r: r["keyword"])
def test_every_example_of_the_keyword_table_builds(row: dict[str, object]) -> None:
    layout, shape = str(row["example"]), row["input_shape"]
    rows = describe(layout, shape, outputs=1)  # type: ignore[arg-type]
    model = build_model(layout, shape, outputs=1)  # type: ignore[arg-type]
    assert sum(r.params for r in rows) == sum(p.numel() for p in model.parameters())
    assert row["supported"] in {"yes", "differs"}


@pytest.mark.parametrize(("layout", "shape", "outputs", "index", "words"), [
    ("DENSE|0|RELU,DENSE|4", (4,), 2, 0, "only the last layer can be TMVA's output layer"),
    ("DENSE|16,DENSE|0|LINEAR", (4,), None, 1, "pass outputs=N"),
    ("DENSE|(N+|RELU", (4,), None, 0, "is not a formula in N"),
    ("DENSE|N/(N-4)", (4,), None, 0, "divides by zero for N = 4"),
    ("DENSE|N-9", (4,), None, 0, "got -5 from 'N-9' with N = 4"),
    ("DENSE|2.5", (4,), None, 0, "width '2.5' is not an integer"),
    ("GRU|4|0|0|0|0|2", (5, 3), None, 0, "resetGateAfter must be 0 or 1"),
    ("LSTM|4|0|0|0|0|1", (5, 3), None, 0, "got 6 fields"),
    ("Encoder={FLAT,DENSE|4}Decoder={DENSE|15}", (1, 4, 4), None, 0,
     "decoder must end at the input shape"),
    ("V:Layout=DENSE|8|WIGGLE", (4,), None, 0, "unknown activation 'WIGGLE'"),
])
def test_inconsistent_layouts_still_say_where_and_why(
        layout: str, shape: tuple[int, ...], outputs: int | None, index: int,
        words: str) -> None:
    with pytest.raises(LayoutError) as info:
        build_model(layout, shape, outputs)
    err = info.value
    assert err.index == index and words in str(err), str(err)
    assert layout[err.offset:].startswith(err.token)


def test_input_layout_errors() -> None:
    with pytest.raises(LayoutError, match="not a TMVA InputLayout"):
        build_model("DENSE|3", "1|x|3")


def test_a_two_class_layout_with_one_output_trains_like_tmvas_sigmoid() -> None:
    model = classifier("FLAT,DENSE|8|RELU,DENSE|1|LINEAR", (1, 4, 4), 2)
    x = torch.randn(6, 1, 4, 4)
    logits = model(x)
    assert logits.shape == (6, 2)
    z = model[0](x)
    assert torch.allclose(torch.softmax(logits, 1)[:, 1:], torch.sigmoid(z), atol=1e-6)
    assert _out(classifier("FLAT,DENSE|8|RELU,LINEAR", (1, 4, 4), 10), (1, 4, 4)) == (10,)
    metrics = train_layout_classifier({"dataset": "jets", "n": 300, "size": 16, "epochs": 2,
                                       "layout": "FLAT,DENSE|16|RELU,DENSE|0|LINEAR"})
    assert 0.0 <= metrics["val_auc"] <= 1.0 and metrics["val_acc"] > 0.4
