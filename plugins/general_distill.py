"""General distillation: TinyBERT's intermediate-layer losses on unlabelled text, before any task.

TinyBERT (Jiao et al. 2020 §3.2) starts task distillation from a *general-distilled*
student: one trained, before any task, to match the teacher's embedding-layer output,
attention scores and hidden states (the intermediate-layer losses of `tinybert`, no
prediction loss) on general text. `GeneralDistillation` is that loss as one phase with
warm-up and linear decay (the official `general_distill.py`: BertAdam, `warmup_linear`,
10% warm-up). A pair asks for the result from its `build_student` through
`kdbench.student_zoo.cached_body`, which trains it once through the one loop and
caches it with a card (see `minilm-tiny4-gd` in `minilm.py`).

As in the paper, the teacher of general distillation is the pre-trained model (for
`minilm-tiny4-gd`, all-MiniLM-L6-v2 before fine-tuning), not the task's teacher.
Deviations from the paper: the text is WordNet's (training synsets
only, see `wordnet_supersense.unlabelled_texts`), not Wikipedia; budgets are minutes,
not days; the learned projection W_h is not carried into task distillation.
"""
from __future__ import annotations

from kdbench.api import Phase

from .tinybert import TinyBERT


class GeneralDistillation(TinyBERT):
    """TinyBERT's intermediate-layer losses only, as one phase with warm-up and linear decay (not registered)."""

    name = "general-distillation"
    defaults = {**TinyBERT.defaults, "stage1_fraction": 1.0, "warmup": 0.1}
    sources = {**TinyBERT.sources, "warmup": "official general_distill.py: BertAdam 'warmup_linear', "
                                             "--warmup_proportion 0.1"}

    def phases(self) -> list[Phase]:
        return [Phase("general", 1.0, schedule="linear", warmup=self.hp.warmup)]
