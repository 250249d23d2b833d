"""A small CNN on scikit-learn's digits.

The 8x8 handwritten digits ship with sklearn, so searches and demos run with no download.
"""

from __future__ import annotations

from typing import Any

from kale_ext.search import choice, loguniform, uniform
from kale_ext.search import int as int_
from kale_ext.trial import load_checkpoint, report, save_checkpoint

DIGITS_SPACE: dict[str, Any] = {
    "lr": loguniform(1e-4, 3e-1),
    "dropout": uniform(0.0, 0.6),
    "channels": int_(4, 32, log=True),
    "optimizer": choice(["Adam", "SGD"]),
    "batch_size": choice([32, 64, 128]),
    "epochs": 9,
}


def digits_data(seed: int = 0) -> dict[str, Any]:
    """Train / validation / test tensors of the digits, scaled to [0, 1], as (N, 1, 8, 8)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32").reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed,
                                                        stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.2,
                                                      random_state=seed, stratify=y_train)
    t = torch.from_numpy
    return {"train": (t(x_train), t(y_train)), "val": (t(x_val), t(y_val)),
            "test": (t(x_test), t(y_test))}


def digits_cnn(channels: int = 16, dropout: float = 0.25) -> Any:
    """Two 3x3 convolutions, a pooling step and a dense head: 10 logits."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(2 * channels * 16, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def train_digits_cnn(config: dict[str, Any]) -> dict[str, float]:
    """Train the digits CNN as a trial, reporting loss/accuracy every epoch.

    Checkpoints every epoch, so a paused, retried or resumed trial continues where it
    left off. Returns the final validation metrics.
    """
    import torch
    from torch import nn

    torch.manual_seed(int(config.get("seed", 0)))
    torch.set_num_threads(1)
    data = digits_data()
    x_train, y_train = data["train"]
    x_val, y_val = data["val"]
    model = digits_cnn(int(config.get("channels", 16)), float(config.get("dropout", 0.25)))
    lr = float(config.get("lr", 1e-3))
    optimizer: torch.optim.Optimizer = (
        torch.optim.Adam(model.parameters(), lr=lr) if config.get("optimizer", "Adam") == "Adam"
        else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    )
    loss_fn = nn.CrossEntropyLoss()
    start = 0
    state = load_checkpoint()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"] + 1
    batch = int(config.get("batch_size", 64))
    generator = torch.Generator().manual_seed(int(config.get("seed", 0)))
    metrics: dict[str, float] = {}
    for epoch in range(start, int(config.get("epochs", 10))):
        model.train()
        total, correct, running = 0, 0, 0.0
        for idx in torch.randperm(len(x_train), generator=generator).split(batch):
            optimizer.zero_grad()
            out = model(x_train[idx])
            loss = loss_fn(out, y_train[idx])
            loss.backward()
            optimizer.step()
            running += float(loss) * len(idx)
            correct += int((out.argmax(1) == y_train[idx]).sum())
            total += len(idx)
        model.eval()
        with torch.no_grad():
            out = model(x_val)
            val_loss = float(loss_fn(out, y_val))
            val_acc = float((out.argmax(1) == y_val).float().mean())
        metrics = {"loss": running / total, "acc": correct / total,
                   "val_loss": val_loss, "val_acc": val_acc}
        save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "epoch": epoch}, epoch)
        report(epoch=epoch + 1, **metrics)
    return metrics
