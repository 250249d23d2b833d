"""Ready models and trainables for searches and distributed runs (PyTorch, imported lazily).

- Layout strings in the TMVA style: :func:`build_model`, :func:`describe`
  (grammar in :mod:`kale_ext.models._layout`; TMVA's keywords and how they are read in
  :data:`TMVA_KEYWORDS`).
- Synthetic physics data: :func:`jet_images`, :func:`boosted_jet_images` (with
  :func:`jet_mass`), :func:`calo_showers`; ROOT trees through uproot, many files and
  per-rank shards, read whole or streamed (:class:`RootStream`): :func:`root_dataset`.
- Trainables ``train_xxx(config) -> dict`` that report every epoch and checkpoint:
  :func:`train_digits_cnn`, :func:`train_jet_cnn` (a jet-image CNN, :func:`jet_cnn`),
  :func:`train_layout_classifier`, :func:`train_autoencoder`, :func:`train_vae`,
  :func:`train_gan`; :func:`beta_sweep` / :func:`beta_table` for the beta-VAE's
  posterior against beta.
"""

from __future__ import annotations

import importlib
from typing import Any

# Every name loads on first use: torch, scikit-learn and uproot are slow to import.
_LAZY = {
    "DIGITS_SPACE": "kale_ext.models._digits",
    "digits_data": "kale_ext.models._digits",
    "train_digits_cnn": "kale_ext.models._digits",
    "build_model": "kale_ext.models._builder",
    "describe": "kale_ext.models._builder",
    "AutoEncoder": "kale_ext.models._builder",
    "GANPair": "kale_ext.models._builder",
    "LayerInfo": "kale_ext.models._builder",
    "TMVA_KEYWORDS": "kale_ext.models._tmva",
    "jet_images": "kale_ext.models._physics",
    "calo_showers": "kale_ext.models._physics",
    "boosted_jet_images": "kale_ext.models._jets",
    "jet_mass": "kale_ext.models._jets",
    "JET_SPACE": "kale_ext.models._jet_cnn",
    "jet_cnn": "kale_ext.models._jet_cnn",
    "jet_data": "kale_ext.models._jet_cnn",
    "evaluate_jet_cnn": "kale_ext.models._jet_cnn",
    "train_jet_cnn": "kale_ext.models._jet_cnn",
    "load_dataset": "kale_ext.models._classifier",
    "train_layout_classifier": "kale_ext.models._classifier",
    "VAE": "kale_ext.models._vae",
    "build_vae": "kale_ext.models._vae",
    "kl_divergence": "kale_ext.models._vae",
    "vae_loss": "kale_ext.models._vae",
    "anomaly_scores": "kale_ext.models._vae",
    "latent_stats": "kale_ext.models._vae",
    "train_vae": "kale_ext.models._vae",
    "train_autoencoder": "kale_ext.models._vae",
    "BETAS_PUBLISHED": "kale_ext.models._vae",
    "BETA_TABLE_PUBLISHED": "kale_ext.models._vae",
    "beta_sweep": "kale_ext.models._vae",
    "beta_table": "kale_ext.models._vae",
    "train_gan": "kale_ext.models._gan",
    "energy_ks": "kale_ext.models._gan",
    "root_dataset": "kale_ext.models._root",
    "root_files": "kale_ext.models._root",
    "RootStream": "kale_ext.models._root_stream",
    "shard_range": "kale_ext.models._root",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kale_ext.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
