"""A classifier whose architecture is a searchable layout string."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kale_ext._errors import ConfigError
from kale_ext.models import _loop
from kale_ext.models._builder import build_model
from kale_ext.models._shapes import plan

DATASETS = ("digits", "jets", "boosted_jets")

DEFAULT_LAYOUTS = {
    "digits": "CONV|16|3|3|1|1|1|1|RELU,MAXPOOL|2|2|2|2,FLAT,DENSE|64|RELU,DENSE|10|LINEAR",
    "jets": ("CONV|8|3|3|1|1|1|1|RELU,MAXPOOL|2|2|2|2,CONV|16|3|3|1|1|1|1|RELU,"
             "MAXPOOL|2|2|2|2,FLAT,DENSE|32|RELU,DENSE|2|LINEAR"),
}


def _split(x: torch.Tensor, y: torch.Tensor, val_fraction: float) -> dict[str, Any]:
    n_val = max(int(len(x) * val_fraction), 1)
    return {"train": (x[n_val:], y[n_val:]), "val": (x[:n_val], y[:n_val])}


def is_root_source(name: str) -> bool:
    """Whether a dataset name is a ROOT source: ``root://`` URL, ``file://`` or ``*.root``."""
    return name.startswith(("root://", "file://")) or name.endswith(".root")


def _root(source: str, config: dict[str, Any]) -> dict[str, Any]:
    from kale_ext.models._root import root_dataset, root_entries, root_files

    tree, label = str(config.get("tree", "events")), str(config.get("label", "label"))
    if "branches" not in config:
        raise ConfigError(f"a ROOT dataset needs config['branches'], the branches (names or "
                          f"globs such as 'pix_*') of tree {tree!r} in {source!r}")
    total = sum(root_entries(root_files(source), tree))
    n_val = max(int(total * float(config.get("val_fraction", 0.2))), 1)
    keys: dict[str, Any] = {"label": label, "image_shape": config.get("image_shape"),
                            "pad_to": config.get("pad_to")}
    # validation: the last entries, read whole; training: the rest, this rank's share
    x_val, y_val = root_dataset(source, tree, config["branches"], entry_start=total - n_val,
                                **keys).tensors
    x, y = root_dataset(source, tree, config["branches"], entry_stop=total - n_val,
                        shard=config.get("shard"), **keys).tensors
    return {"train": (x, y), "val": (x_val, y_val), "input_shape": tuple(x.shape[1:]),
            "n_classes": int(torch.cat([y, y_val]).max()) + 1}


def load_dataset(name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train / validation tensors of a named dataset, scaled for training.

    Parameters
    ----------
    name
        ``"digits"`` (scikit-learn's 8x8 digits, 10 classes), ``"jets"``
        (:func:`kale_ext.models.jet_images`, 2 classes, ``log1p``-scaled energies) or
        ``"boosted_jets"`` (:func:`kale_ext.models.boosted_jet_images`, W or top jets
        against QCD, 2 classes, ``log1p``-scaled; :func:`kale_ext.models.jet_data`), or
        a ROOT source: an XRootD ``root://`` URL, a ``file://`` path or a path or glob
        ending in ``.root`` (:func:`kale_ext.models.root_dataset` reads it).
    config
        ``n`` (jets: events, default 2000), ``size`` (jets: image side, default 32;
        boosted_jets: see :func:`kale_ext.models.jet_data`),
        ``data_seed`` (default 0), ``val_fraction`` (jets, default 0.25). ROOT sources:
        ``branches`` (required), ``tree`` ("events"), ``label`` ("label"),
        ``image_shape``, ``pad_to``, ``val_fraction`` (0.2: the last entries validate)
        and ``shard`` (``(rank, world_size)`` or "auto": this rank's training entries).

    Returns
    -------
    dict
        ``train`` and ``val`` as (x, y) tensors, ``input_shape``, ``n_classes``.
    """
    config = config or {}
    seed = int(config.get("data_seed", 0))
    if name == "digits":
        from kale_ext.models._digits import digits_data

        data = digits_data(seed)
        return {"train": data["train"], "val": data["val"], "input_shape": (1, 8, 8),
                "n_classes": 10}
    if name == "jets":
        from kale_ext.models._physics import jet_images

        size = int(config.get("size", 32))
        x, y = jet_images(int(config.get("n", 2000)), size=size, seed=seed)
        data = _split(torch.log1p(x), y, float(config.get("val_fraction", 0.25)))
        return {**data, "input_shape": (1, size, size), "n_classes": 2}
    if is_root_source(name):
        return _root(name, config)
    if name == "boosted_jets":
        from kale_ext.models._jet_cnn import jet_data

        return {**jet_data(config), "n_classes": 2}
    raise ConfigError(f"dataset {name!r} is not one of {list(DATASETS)}; pass "
                      "config['dataset'] = 'digits', 'jets' or 'boosted_jets'")


def tmva_outputs(n_classes: int) -> int:
    """TMVA's number of outputs: one sigmoid output for two classes, else one per class."""
    return 1 if n_classes == 2 else n_classes


class SigmoidPair(nn.Module):
    """Two class logits ``(0, z)`` from one: their softmax is ``(1 - sigmoid(z), sigmoid(z))``.

    A two-class layout that ends in one output, as TMVA's binary classifiers do, then
    trains with the same cross entropy as TMVA's sigmoid output.
    """

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(z), z], dim=1)


def with_head(layout: str, input_shape: tuple[int, ...], n_classes: int) -> str:
    """``layout`` with a linear output layer of ``n_classes`` units unless it has one.

    A layout with TMVA's output layer (``DENSE|0|LINEAR`` or a bare activation at its
    end) has one already, as has a two-class layout ending in one output.
    """
    outputs = tmva_outputs(n_classes)
    layers = plan(layout, input_shape, outputs).parts.get("model")
    if layers is None:
        raise ConfigError(f"a classifier layout must be a plain list of layers, not an "
                          f"autoencoder or GAN: {layout!r}")
    if layers[-1].out_shape in {(n_classes,), (outputs,)}:
        return layout
    return f"{layout},DENSE|{n_classes}|LINEAR"


def classifier(layout: str, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Return the torch module of a classifier layout giving ``n_classes`` logits.

    See :func:`with_head`.
    """
    layout = with_head(layout, input_shape, n_classes)
    model = build_model(layout, input_shape, tmva_outputs(n_classes))
    if n_classes == 2 and plan(layout, input_shape, 1).parts["model"][-1].out_shape == (1,):
        return nn.Sequential(model, SigmoidPair())
    return model


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, Any]:
    model.eval()
    with torch.no_grad():
        out = model(x)
    return (float(nn.functional.cross_entropy(out, y)),
            float((out.argmax(1) == y).float().mean()), out)


def train_layout_classifier(config: dict[str, Any]) -> dict[str, float]:
    """Train a classifier built from ``config["layout"]`` as a trial, reporting every epoch.

    Config keys (all optional): ``layout`` (a layout string; a linear output layer is
    appended unless the layout already ends with ``n_classes`` outputs or TMVA's output
    layer, see :func:`with_head`), ``dataset``
    (``"digits"`` or ``"jets"``), ``epochs`` (5), ``lr`` (1e-3), ``optimizer`` ("Adam"),
    ``batch_size`` (64), ``seed`` (0), ``device`` ("cpu"; "cuda" or "auto"), plus
    :func:`load_dataset`'s keys. Layout strings are plain strings, so
    ``kale.choice([layout_a, layout_b])`` searches over them.

    Reports ``loss, acc, val_loss, val_acc`` (and ``val_auc`` for two classes); returns
    the last epoch's metrics. Checkpoints every epoch and resumes from the trial's
    checkpoint.
    """
    generator = _loop.setup(config)
    name = str(config.get("dataset", "digits"))
    data = load_dataset(name, config)
    layout = str(config.get("layout", DEFAULT_LAYOUTS.get(name, "")))
    dev = _loop.device(config)
    model = classifier(layout, data["input_shape"], data["n_classes"]).to(dev)
    opt = _loop.optimizer(model.parameters(), config)
    modules = {"model": model, "optimizer": opt}
    start = _loop.resume(modules, generator)
    (x_train, y_train), (x_val, y_val) = ((t.to(dev) for t in pair)
                                          for pair in (data["train"], data["val"]))
    metrics: dict[str, float] = {}
    for epoch in range(start, int(config.get("epochs", 5))):
        model.train()
        running, correct = 0.0, 0
        for idx in _loop.batches(len(x_train), int(config.get("batch_size", 64)), generator):
            opt.zero_grad()
            out = model(x_train[idx])
            loss = nn.functional.cross_entropy(out, y_train[idx])
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == y_train[idx]).sum())
        val_loss, val_acc, out = _evaluate(model, x_val, y_val)
        metrics = {"loss": running / len(x_train), "acc": correct / len(x_train),
                   "val_loss": val_loss, "val_acc": val_acc}
        if data["n_classes"] == 2:
            from sklearn.metrics import roc_auc_score

            scores = torch.softmax(out, 1)[:, 1]
            metrics["val_auc"] = float(roc_auc_score(y_val.cpu().numpy(),
                                                     scores.cpu().numpy()))
        _loop.checkpoint(modules, epoch, generator)
        _loop.report(epoch, metrics)
    return metrics
