"""Dataset `cifar-100` and pair `cifar-resnet32x4` — the `paper` profile's vision setting.

CIFAR-100 through torchvision (downloaded into `$KDBENCH_HOME/data` when online, or
found in `--data-dir` / `$KDBENCH_DATA` as the `cifar-100-python` folder); the pair is
RepDistiller's resnet32x4 → resnet8x4 (published: teacher 79.42, student 72.50, KD
73.33). Deviations: kdbench's one loop uses AdamW with a cosine schedule and no
random crop/flip augmentation, so expect lower absolute accuracies than published.
Only the `paper` profile is defined (GPU + internet).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from kdbench import DataMissing, Dataset, Pair, Schedule, Splits, TensorData, hookimpl, kdbench_home, offline
from kdbench.data import data_dirs, fingerprint, split_train_val

from . import cifar_resnet  # noqa: F401 - registers the timm models

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


class CIFAR100(Dataset):
    """CIFAR-100: 32×32 colour images, 100 classes; 45k train / 5k val / 10k test (torchvision)."""

    name = "cifar-100"
    num_classes = 100
    val_size = 5000

    def load(self, data_dir: Path | None = None, **options: Any) -> Splits:
        from torchvision.datasets import CIFAR100 as TV

        roots = data_dirs(data_dir, str(kdbench_home() / "data"))
        for root in roots:
            if (root / "cifar-100-python").is_dir():
                break
        else:
            root = kdbench_home() / "data"
            if offline():
                raise DataMissing(f"cifar-100 not found in {', '.join(map(str, roots))} and offline; "
                                  "download it once with internet, or put cifar-100-python/ in $KDBENCH_DATA")
        try:
            train, test = (TV(str(root), train=t, download=not offline()) for t in (True, False))
        except Exception as exc:  # noqa: BLE001 - network or file errors: say what to do
            raise DataMissing(f"cifar-100 could not be loaded or downloaded ({exc}); "
                              "put cifar-100-python/ in $KDBENCH_DATA") from None
        mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)

        def tensors(ds: Any) -> TensorData:
            x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float() / 255.0
            return TensorData((x - mean) / std, torch.tensor(ds.targets).long())

        tr, te = tensors(train), tensors(test)
        tr, va = split_train_val(tr, self.val_size)
        return Splits(tr, va, te, self.num_classes, fingerprint(te.y))


class CifarResNet32x4(Pair):
    """CIFAR-100, resnet32x4 teacher → resnet8x4 student (RepDistiller's pair); paper profile only."""

    name = "cifar-resnet32x4"
    dataset = "cifar-100"
    taps = frozenset({"logits", "features"})
    schedules = {"paper": Schedule(steps=150_000, teacher_steps=150_000, batch_size=64, lr=1e-3, teacher_lr=1e-3,
                                   weight_decay=5e-4)}
    student_spec = {"model_name": "cifar_resnet8x4"}

    def downloads(self, profile: str) -> list[str]:
        return ["CIFAR-100 (about 170 MB, torchvision) into $KDBENCH_HOME/data unless already there"]

    def teacher_recipe(self, profile: str) -> dict[str, Any]:
        s = self.schedule(profile)
        return {"model": "cifar_resnet32x4", "dataset": self.dataset, "profile": profile,
                "steps": s.teacher_steps, "lr": s.teacher_lr, "batch_size": s.batch_size}

    def build_teacher(self, num_classes: int) -> nn.Module:
        return timm.create_model("cifar_resnet32x4", num_classes=num_classes)

    def build_student(self, teacher: nn.Module, num_classes: int) -> nn.Module:
        return timm.create_model(self.student_spec["model_name"], num_classes=num_classes)


@hookimpl
def kdbench_datasets() -> list[type]:
    return [CIFAR100]


@hookimpl
def kdbench_pairs() -> list[type]:
    return [CifarResNet32x4]
