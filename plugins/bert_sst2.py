"""Pair `bert-sst2-tiny4`: BERT-base → a TinyBERT-4-sized student on GLUE SST-2 (`paper` profile only).

The published text setting (REFERENCES: TinyBERT-4 reaches 92.6 on SST-2 dev with a
93.4 BERT-base teacher; DistilBERT 91.3). Teacher: `google-bert/bert-base-uncased`
(110 M parameters) with a fresh classification head, fine-tuned on SST-2 through the
one training loop (3 epochs at batch 32, lr 2e-5, as BERT's paper) and cached in the
teacher zoo. Student: TinyBERT-4's shape (4 layers, hidden 312, 12 heads, FFN 1200,
14.5 M parameters with embeddings) in the teacher's family and vocabulary.

Deviations from the papers: the student starts from random weights — TinyBERT's
general distillation on Wikipedia and its data augmentation are not done — so expect it
well below the published numbers. Needs a GPU and internet (the weights and SST-2);
`kdbench run --profile paper --dry-run` shows what it would fetch.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from kdbench import Schedule, hookimpl

from .minilm import MiniLMPair, narrow_student

HUB_ID = "google-bert/bert-base-uncased"
#: SST-2 has 66,477 training sentences after kdbench's validation cut: 3 epochs at batch 32.
EPOCHS_STEPS = 6_300
SCHEDULES = {"paper": Schedule(steps=EPOCHS_STEPS, teacher_steps=EPOCHS_STEPS, batch_size=32, lr=1e-4,
                               teacher_lr=2e-5, extra={"max_len": 64, "latency_batch": 64})}


class BertSST2Tiny4(MiniLMPair):
    """SST-2, BERT-base teacher → random TinyBERT-4-sized student (4 layers, hidden 312); paper profile."""

    name = "bert-sst2-tiny4"
    dataset = "sst2"
    schedules = SCHEDULES
    #: Not the MiniLM pairs' shipped teacher (its own teacher is BERT-base on SST-2).
    shipped_teacher_dir = None
    zoo_recipe = None  # type: ignore[assignment]
    stored_teacher_state = None  # type: ignore[assignment]
    layers, hidden, ffn = 4, 312, 1200
    student_spec = {"init": "random", "layers": layers, "hidden": hidden, "ffn": ffn}
    freeze_word_embeddings = False

    def source(self) -> str:
        return HUB_ID

    def downloads(self, profile: str) -> list[str]:
        return [f"{HUB_ID} weights and tokenizer (about 440 MB, Hugging Face hub)",
                "GLUE SST-2 (about 7 MB, Hugging Face datasets; pip install 'kdbench[sst2]')"]

    def teacher_recipe(self, profile: str) -> dict[str, Any]:
        s = self.schedule(profile)
        return {"model": HUB_ID, "dataset": self.dataset, "profile": profile, "steps": s.teacher_steps,
                "lr": s.teacher_lr, "batch_size": s.batch_size, "max_len": s.extra["max_len"]}

    def build_student(self, teacher: nn.Module, num_classes: int) -> nn.Module:
        return narrow_student(teacher, self.layers, self.hidden, self.ffn)


@hookimpl
def kdbench_pairs() -> list[type]:
    return [BertSST2Tiny4]
