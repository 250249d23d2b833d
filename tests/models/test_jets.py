"""Boosted-jet images (W / top against QCD) and the jet-image CNN that tells them apart."""

from __future__ import annotations

import pytest
import torch

from kale_ext import ConfigError
from kale_ext.models import (
    JET_SPACE,
    boosted_jet_images,
    evaluate_jet_cnn,
    jet_cnn,
    jet_data,
    jet_mass,
    load_dataset,
    train_jet_cnn,
)
from kale_ext.search import Space
from tests.models.conftest import Trial


@pytest.fixture(scope="module")
def w_jets() -> tuple[torch.Tensor, torch.Tensor]:
    return boosted_jet_images(600, size=64, seed=3)


def test_images_are_reproducible_calorimeter_images(w_jets: tuple[torch.Tensor, ...]) -> None:
    x, y = w_jets
    x2, y2 = boosted_jet_images(600, size=64, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (600, 1, 64, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.4 < float(y.float().mean()) < 0.6 and float(x.min()) == 0.0
    total = x.sum((1, 2, 3))  # the jet's pT (250-300 GeV) and a little pile-up
    assert 230 < float(total.median()) < 320 and float(total.min()) > 150
    # pre-processed: the leading prong at the centre, the harder side on the right
    brightest = x.flatten(1).argmax(1)
    near = ((brightest // 64 - 31.5).abs() <= 2) & ((brightest % 64 - 31.5).abs() <= 2)
    assert float(near.float().mean()) > 0.9
    right = x[:, :, 32:].sum((1, 2, 3)) >= x[:, :, :32].sum((1, 2, 3))
    assert float(right.float().mean()) > 0.98  # up to the calorimeter's smearing


def test_signal_has_the_w_mass_and_qcd_falls_below(w_jets: tuple[torch.Tensor, ...]) -> None:
    x, y = w_jets
    mass = jet_mass(x)
    signal, qcd = mass[y == 1], mass[y == 0]
    assert 75 < float(signal.median()) < 95  # m_W = 80.4 GeV, plus hadrons and pile-up
    assert float(qcd.median()) < 50
    window = ((mass > 65) & (mass < 105)).float()
    assert float(window[y == 1].mean()) > 0.8 > 0.3 > float(window[y == 0].mean())


def test_top_jets_have_three_prongs_and_the_top_mass() -> None:
    x, y = boosted_jet_images(200, size=48, seed=5, signal="top", signal_fraction=1.0)
    assert bool((y == 1).all()) and x.shape == (200, 1, 48, 48)
    assert 160 < float(jet_mass(x).median()) < 200
    with pytest.raises(ConfigError, match="raise pt_range"):
        boosted_jet_images(5, signal="top", signal_fraction=1.0, pt_range=(100, 120))
    with pytest.raises(ConfigError, match="signal 'Z'"):
        boosted_jet_images(5, signal="Z")
    with pytest.raises(ConfigError, match="pt_range"):
        boosted_jet_images(5, pt_range=(300, 200))


def test_jet_cnn_shapes_and_errors() -> None:
    model = jet_cnn((1, 32, 32), [4, 8], [16, 8], 0.1)
    assert model(torch.zeros(3, 1, 32, 32)).shape == (3, 1)
    assert jet_cnn((1, 8, 8), [], [4])(torch.zeros(2, 1, 8, 8)).shape == (2, 1)
    with pytest.raises(ConfigError, match="at most 3 conv sizes"):
        jet_cnn((1, 8, 8), [4, 4, 4, 4])
    with pytest.raises(ConfigError, match="dropout"):
        jet_cnn((1, 8, 8), [4], [4], 1.0)


def test_jet_cnn_trains_as_a_trial(trial: Trial) -> None:
    config = {"n": 800, "size": 32, "epochs": 3, "lr": 3e-3, "conv_sizes": [8, 16],
              "fc_sizes": [32], "dropout": 0.1, "batch_size": 64}
    metrics = trial.run(train_jet_cnn, config)
    assert [r["epoch"] for r in trial.reports] == [1, 2, 3]
    assert {"loss", "val_loss", "acc", "val_acc", "val_auc"} <= set(trial.reports[-1])
    assert metrics["val_auc"] > 0.85 and metrics["val_acc"] > 0.75
    assert len(trial.checkpoints) == 3
    data = jet_data(config)
    assert data["input_shape"] == (1, 32, 32) and len(data["val"][0]) == 160
    assert load_dataset("boosted_jets", config)["n_classes"] == 2
    model = jet_cnn((1, 32, 32), [8, 16], [32])
    model.load_state_dict(torch.load(trial.last_checkpoint, weights_only=False)["model"])
    scored = evaluate_jet_cnn(model, *data["val"])
    assert scored["auc"] == pytest.approx(metrics["val_auc"])
    assert scored["scores"].shape == (160,)


def test_jet_space_suggests_the_nersc_columns() -> None:
    import optuna

    trial = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1)).ask()
    config = Space(JET_SPACE).suggest(trial)
    assert set(config) == {"conv_sizes", "fc_sizes", "dropout", "optimizer", "lr"}
    assert isinstance(config["conv_sizes"], list) and isinstance(config["fc_sizes"], list)
