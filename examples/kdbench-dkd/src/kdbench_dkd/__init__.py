"""kdbench-dkd: Decoupled Knowledge Distillation as a third-party kdbench plugin."""
from .dkd import DKD, dkd_terms

__all__ = ["DKD", "dkd_terms"]
