"""Loss building blocks shared by method plugins (no method lives here)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T²·KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch (Hinton et al. 2015).

    The T² keeps the soft-target gradients on the scale of the hard-label ones.
    """
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * temperature**2
