"""Dataset `fashion-mnist`: Zalando's 28×28 clothing images, 10 classes.

Found, in order, in `--data-dir`, `$KDBENCH_DATA`, `/usr/share/datasets/fashion-mnist`
(Debian package `dataset-fashion-mnist`) and torchvision's download folder under
`$KDBENCH_HOME/data`; downloaded with torchvision only when online.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdbench import DataMissing, Dataset, Splits, TensorData, hookimpl, kdbench_home, offline
from kdbench.data import data_dirs, find_files, fingerprint, read_idx, resolve, split_train_val

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530


class FashionMNIST(Dataset):
    """Fashion-MNIST: 28×28 grey clothing images, 10 classes; 55k train / 5k val / 10k test."""

    name = "fashion-mnist"
    num_classes = 10
    val_size = 5000

    def folders(self, data_dir: Path | None) -> list[Path]:
        cache = kdbench_home() / "data" / "FashionMNIST" / "raw"
        return data_dirs(data_dir, SYSTEM_DIR, str(cache))

    def download(self) -> Path:
        from torchvision.datasets import FashionMNIST as TV

        root = kdbench_home() / "data"
        TV(str(root), train=True, download=True)
        TV(str(root), train=False, download=True)
        return root / "FashionMNIST" / "raw"

    def load(self, data_dir: Path | None = None, **options: Any) -> Splits:
        folders = self.folders(data_dir)
        folder = find_files(FILES, folders)
        if folder is None and not offline():
            try:
                folder = self.download()
            except Exception:  # noqa: BLE001 - any network failure means "offline"
                folder = None
        if folder is None:
            raise DataMissing(
                "fashion-mnist IDX files not found in " + ", ".join(map(str, folders))
                + " and could not be downloaded; install them with `apt-get install dataset-fashion-mnist` "
                "or put the four *-ubyte(.gz) files in a folder given by --data-dir or $KDBENCH_DATA"
            )
        arrays = [torch.from_numpy(read_idx(resolve(folder, f)).copy()) for f in FILES]
        x_train, y_train, x_test, y_test = arrays

        def images(x: torch.Tensor) -> torch.Tensor:
            return ((x.float() / 255.0 - MEAN) / STD).unsqueeze(1)

        train, val = split_train_val(TensorData(images(x_train), y_train.long()), self.val_size)
        return Splits(train, val, TensorData(images(x_test), y_test.long()), self.num_classes,
                      fingerprint(x_train, y_train, x_test, y_test))


#: The value of a black (background) pixel after normalisation.
BACKGROUND = (0.0 - MEAN) / STD


def shift_flip(x: torch.Tensor, pad: int, flip: bool = False) -> torch.Tensor:
    """Each image of the batch translated by up to ±`pad` px (background fills in), and
    mirrored left-right with probability 1/2 when `flip`: the random crop with padding of
    CIFAR-style training, and Hinton et al.'s ±2 px jitter (pad 2, no flip).

    Uses the global torch generator (seeded by the teacher's training), so a recipe is
    reproducible.
    """
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), value=BACKGROUND)
    dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    out = padded[batch, chan, rows, cols]
    if flip:
        mirror = torch.rand(b, device=x.device) < 0.5
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    return out


def augment(x: torch.Tensor, name: str) -> torch.Tensor:
    """A named teacher augmentation: `shift<N>` (±N px) or `shift<N>-flip`."""
    if not name.startswith("shift"):
        raise ValueError(f"unknown fashion-mnist augmentation {name!r}")
    pad, _, flip = name[len("shift"):].partition("-")
    return shift_flip(x, int(pad), flip == "flip")


@hookimpl
def kdbench_datasets() -> list[type]:
    return [FashionMNIST]
