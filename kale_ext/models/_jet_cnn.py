"""A jet-image CNN: W (or top) jets against QCD, the search of NERSC's HPO notebooks.

The network is parameterised as those searches were: a list of convolution sizes
(3x3 convolutions, each followed by ReLU and 2x2 max-pooling), a list of fully
connected sizes (each with ReLU and dropout) and one output logit; the optimizer and
its learning rate complete the table ``status, epoch, conv sizes, fc sizes, dropout,
optimizer, lr, loss, val_loss, acc, val_acc``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kale_ext._errors import ConfigError
from kale_ext.models import _loop
from kale_ext.search import choice, loguniform, uniform

JET_SPACE: dict[str, Any] = {
    "conv_sizes": choice([[8, 16], [8, 16, 32], [16, 32, 64]]),
    "fc_sizes": choice([[32], [64], [128, 32]]),
    "dropout": uniform(0.0, 0.5),
    "optimizer": choice(["Adam", "RMSprop", "SGD"]),
    "lr": loguniform(1e-4, 1e-2),
}


def jet_cnn(input_shape: Sequence[int], conv_sizes: Sequence[int] = (8, 16, 32),
            fc_sizes: Sequence[int] = (64,), dropout: float = 0.2) -> nn.Sequential:
    """Convolutions (3x3, ReLU, 2x2 max-pool) then dense layers (ReLU, dropout), one logit.

    Parameters
    ----------
    input_shape
        (channels, height, width) of an image.
    conv_sizes
        Output channels of each convolution; every one halves the image's side.
    fc_sizes
        Units of each fully connected layer before the output.
    dropout
        Dropout probability after each fully connected layer.
    """
    channels, height, width = (int(d) for d in input_shape)
    if len(conv_sizes) and min(height, width) >> len(conv_sizes) < 1:
        raise ConfigError(f"{len(conv_sizes)} convolutions with 2x2 pooling halve a "
                          f"{height}x{width} image below one cell; use at most "
                          f"{min(height, width).bit_length() - 1} conv sizes")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), but got {dropout}")
    layers: list[nn.Module] = []
    for size in conv_sizes:
        layers += [nn.Conv2d(channels, int(size), 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels, height, width = int(size), height // 2, width // 2
    layers.append(nn.Flatten())
    features = channels * height * width
    for size in fc_sizes:
        layers += [nn.Linear(features, int(size)), nn.ReLU(), nn.Dropout(dropout)]
        features = int(size)
    layers.append(nn.Linear(features, 1))
    return nn.Sequential(*layers)


@functools.lru_cache(maxsize=2)
def _jets(n: int, size: int, signal: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    # trials on one worker share the images: generating them costs more than an epoch
    from kale_ext.models._jets import boosted_jet_images

    x, y = boosted_jet_images(n, size=size, seed=seed, signal=signal)
    return torch.log1p(x), y


def jet_data(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train / validation tensors of boosted-jet images, ``log1p``-scaled.

    Config keys (all optional): ``n`` (jets, 10000), ``size`` (image side, 64),
    ``signal`` ("W" or "top"), ``data_seed`` (0), ``val_fraction`` (0.2). The images are
    made once per worker process and shared by its trials; the tensors must not be
    changed in place.

    Returns
    -------
    dict
        ``train`` and ``val`` as (x, y) tensors (y int64, 1 for signal) and
        ``input_shape``.
    """
    config = config or {}
    size = int(config.get("size", 64))
    x, y = _jets(int(config.get("n", 10000)), size, str(config.get("signal", "W")),
                 int(config.get("data_seed", 0)))
    n_val = max(int(len(x) * float(config.get("val_fraction", 0.2))), 1)
    return {"train": (x[n_val:], y[n_val:]), "val": (x[:n_val], y[:n_val]),
            "input_shape": (1, size, size)}


def evaluate_jet_cnn(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 1024) -> dict[str, Any]:
    """``loss``, ``acc``, ``auc`` (ROC) and the signal ``scores`` of a jet CNN on (x, y)."""
    from sklearn.metrics import roc_auc_score

    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(part) for part in x.split(batch_size)]).squeeze(1)
    target = y.float()
    scores = torch.sigmoid(logits).cpu()
    labels = y.cpu().numpy()
    auc = float(roc_auc_score(labels, scores.numpy())) if len(set(labels)) == 2 else 0.5
    return {"loss": float(nn.functional.binary_cross_entropy_with_logits(logits, target)),
            "acc": float(((logits > 0).long() == y).float().mean()), "auc": auc,
            "scores": scores}


def train_jet_cnn(config: dict[str, Any]) -> dict[str, float]:
    """Train the jet-image CNN as a trial, reporting every epoch; return the last metrics.

    Config keys (all optional): ``conv_sizes`` ([8, 16, 32]), ``fc_sizes`` ([64]),
    ``dropout`` (0.2), ``optimizer`` ("Adam", "AdamW", "SGD" or "RMSprop"), ``lr``
    (1e-3), ``batch_size`` (128), ``epochs`` (10), ``seed`` (0), ``device`` ("cpu";
    "cuda" or "auto"), ``threads`` (1), plus :func:`jet_data`'s keys.

    Reports ``loss, acc, val_loss, val_acc, val_auc`` (ROC AUC of the signal score on
    the validation jets) every epoch; checkpoints every epoch and resumes from the
    trial's checkpoint.
    """
    generator = _loop.setup(config)
    data = jet_data(config)
    model = jet_cnn(data["input_shape"], config.get("conv_sizes", (8, 16, 32)),
                    config.get("fc_sizes", (64,)), float(config.get("dropout", 0.2)))
    dev = _loop.device(config)
    model.to(dev)
    opt = _loop.optimizer(model.parameters(), config)
    modules = {"model": model, "optimizer": opt}
    start = _loop.resume(modules, generator)
    (x_train, y_train), (x_val, y_val) = ((t.to(dev) for t in pair)
                                          for pair in (data["train"], data["val"]))
    loss_fn = nn.BCEWithLogitsLoss()
    metrics: dict[str, float] = {}
    for epoch in range(start, int(config.get("epochs", 10))):
        model.train()
        running, correct = 0.0, 0
        for idx in _loop.batches(len(x_train), int(config.get("batch_size", 128)), generator):
            opt.zero_grad()
            logits = model(x_train[idx]).squeeze(1)
            loss = loss_fn(logits, y_train[idx].float())
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(idx)
            correct += int(((logits > 0).long() == y_train[idx]).sum())
        val = evaluate_jet_cnn(model, x_val, y_val)
        metrics = {"loss": running / len(x_train), "acc": correct / len(x_train),
                   "val_loss": val["loss"], "val_acc": val["acc"], "val_auc": val["auc"]}
        _loop.checkpoint(modules, epoch, generator)
        _loop.report(epoch, metrics)
    return metrics
