"""The ready trainables run standalone and inside a trial: metrics, reports, checkpoints."""

from __future__ import annotations

import pytest
import torch

from kale_ext import ConfigError, TrialStopped
from kale_ext._errors import LayoutError
from kale_ext.models import (
    calo_showers,
    energy_ks,
    jet_images,
    train_autoencoder,
    train_gan,
    train_layout_classifier,
    train_vae,
)
from tests.models.conftest import Trial

JET_CNN = ("CONV|8|3|3|1|1|1|1|RELU,MAXPOOL|2|2|2|2,CONV|8|3|3|1|1|1|1|RELU,"
           "MAXPOOL|2|2|2|2,FLAT,DENSE|16|RELU,DENSE|2|LINEAR")


def test_jet_images_are_reproducible_and_physical() -> None:
    x, y = jet_images(200, size=16, seed=4)
    x2, y2 = jet_images(200, size=16, seed=4)
    assert x.shape == (200, 1, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert 0.3 < float(y.float().mean()) < 0.7 and float(x.min()) >= 0.0
    total = x.sum((1, 2, 3))
    assert float(total.min()) > 50.0  # every event has hard deposits, in GeV
    # signal spreads over more separate deposits: more cells above 20 GeV on average
    hard = (x > 20.0).sum((1, 2, 3)).float()
    assert float(hard[y == 1].mean()) > float(hard[y == 0].mean())


def test_calo_showers_follow_their_energy() -> None:
    x, energy = calo_showers(300, size=12, seed=1)
    assert x.shape == (300, 1, 12, 12) and energy.shape == (300,)
    ratio = x.sum((1, 2, 3)) / energy
    assert 0.8 < float(ratio.mean()) < 1.0  # 90 % sampled, with resolution
    assert float(torch.corrcoef(torch.stack([x.sum((1, 2, 3)), energy]))[0, 1]) > 0.95
    assert float(x[:, 0, 5:7, 5:7].mean()) > 10 * float(x[:, 0, :2, :2].mean())  # core


def test_energy_ks() -> None:
    x, _ = calo_showers(400, size=8, seed=2)
    same, p_same = energy_ks(x[:200], x[200:])
    shifted, p_shift = energy_ks(x[:200], x[200:] * 2)
    assert same < 0.2 < shifted and p_same > p_shift


def test_digits_layout_classifier_learns_and_reports(trial: Trial) -> None:
    config = {"dataset": "digits", "epochs": 3, "lr": 3e-3,
              "layout": "CONV|16|3|3|1|1|1|1|RELU,MAXPOOL|2|2|2|2,FLAT,DENSE|64|RELU"}
    metrics = trial.run(train_layout_classifier, config)
    assert metrics["val_acc"] > 0.8
    assert [r["epoch"] for r in trial.reports] == [1, 2, 3]
    assert {"loss", "acc", "val_loss", "val_acc"} <= set(trial.reports[-1])
    assert [c["step"] for c in trial.checkpoints] == [0, 1, 2]


def test_classifier_resumes_from_its_checkpoint(trial: Trial) -> None:
    config = {"dataset": "digits", "epochs": 2, "layout": "FLAT,DENSE|32|RELU"}
    trial.run(train_layout_classifier, config)
    first = trial.last_checkpoint
    trial.reports.clear()
    metrics = trial.run(train_layout_classifier, {**config, "epochs": 4}, restore_from=first)
    assert [r["epoch"] for r in trial.reports] == [3, 4]
    assert metrics["val_acc"] > 0.8


def test_classifier_stops_when_the_driver_says_so(trial: Trial) -> None:
    trial.stop_after = 1
    with pytest.raises(TrialStopped):
        trial.run(train_layout_classifier, {"dataset": "digits", "epochs": 5,
                                            "layout": "FLAT,DENSE|16|RELU"})
    assert [r["epoch"] for r in trial.reports] == [1]
    assert len(trial.checkpoints) == 1  # saved before reporting: resumable


def test_jets_classifier_separates_signal() -> None:
    metrics = train_layout_classifier({"dataset": "jets", "n": 800, "size": 16,
                                       "epochs": 4, "lr": 3e-3, "layout": JET_CNN})
    assert metrics["val_auc"] > 0.8


def test_classifier_config_errors() -> None:
    with pytest.raises(ConfigError, match="dataset"):
        train_layout_classifier({"dataset": "mnist"})
    with pytest.raises(LayoutError, match="MAXPOOL"):
        train_layout_classifier({"dataset": "digits", "layout": "MAXPOOL|2|2|2"})
    with pytest.raises(ConfigError, match="optimizer"):
        train_layout_classifier({"dataset": "digits", "optimizer": "Nesterov", "epochs": 1})


def test_autoencoder_and_vae_find_planted_anomalies(trial: Trial) -> None:
    ae = train_autoencoder({"epochs": 10, "anomaly_classes": [7]})
    assert ae["val_auc"] > 0.65 and ae["kl"] == 0.0
    vae = trial.run(train_vae, {"epochs": 10, "beta": 0.1, "anomaly_classes": [7]})
    assert vae["val_auc"] > 0.65
    assert [r["epoch"] for r in trial.reports] == list(range(1, 11))
    assert {"val_auc", "kl", "mse", "latent_mean", "latent_var"} <= set(trial.reports[-1])


def test_vae_posterior_moves_to_the_prior_as_beta_grows() -> None:
    low = train_vae({"epochs": 6, "beta": 0.01})
    high = train_vae({"epochs": 6, "beta": 0.9})
    assert abs(high["latent_var"] - 1.0) < abs(low["latent_var"] - 1.0)
    assert high["latent_mean_abs"] < low["latent_mean_abs"]
    assert high["kl"] < low["kl"]


def test_vae_on_jets_with_a_custom_layout() -> None:
    layout = ("Encoder={CONV|4|3|3|2|2|1|1|RELU,FLAT,DENSE|16|RELU}"
              "Decoder={DENSE|256|RELU,RESHAPE|4|8|8,DECONV|1|4|4|2|2|1|1|SIGMOID}")
    metrics = train_vae({"dataset": "jets", "n": 600, "size": 16, "epochs": 8,
                         "latent_dim": 3, "layout": layout})
    assert 0.0 <= metrics["val_auc"] <= 1.0 and metrics["mse"] < 0.1
    default = train_vae({"dataset": "jets", "n": 600, "size": 16, "epochs": 8})
    assert default["val_auc"] > 0.6  # signal events as anomalies among QCD
    with pytest.raises(LayoutError, match="decoder must end at the input shape"):
        train_vae({"epochs": 1, "layout": "Encoder={FLAT,DENSE|8}Decoder={DENSE|8}"})


def test_gan_reports_the_energy_ks(trial: Trial) -> None:
    metrics = trial.run(train_gan, {"epochs": 3, "n": 512, "size": 8, "latent_dim": 8})
    assert [r["epoch"] for r in trial.reports] == [1, 2, 3]
    for row in trial.reports:
        assert 0.0 <= row["ks"] <= 1.0 and 0.0 <= row["ks_pvalue"] <= 1.0
        assert row["width_real"] > 0
    assert metrics["energy_real"] > 0 and metrics["energy_fake"] >= 0
    assert len(trial.checkpoints) == 3


def test_gan_layout_must_fit_the_showers() -> None:
    bad = "DENSE|64|RELU,RESHAPE|1|8|8##FLAT,DENSE|1|LINEAR"
    with pytest.raises(ConfigError, match="generator makes"):
        train_gan({"epochs": 1, "n": 64, "size": 12, "latent_dim": 4, "layout": bad})


def test_device_choice() -> None:
    metrics = train_layout_classifier({"dataset": "digits", "epochs": 2, "device": "auto",
                                       "lr": 1e-2,
                                       "layout": "FLAT,DENSE|16|RELU"})
    assert metrics["val_acc"] > 0.5
    with pytest.raises(ConfigError, match="device"):
        train_vae({"epochs": 1, "device": "tpu9"})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            train_gan({"epochs": 1, "n": 64, "size": 8, "device": "cuda"})
