"""The predict and md stages as library calls (the DVC stages are thin wrappers), and the pipeline's
models as those stages load them.

Training is :mod:`physicsml.training`, kept apart so that the train stage does
not depend on prediction and evaluation code. The prediction tables are written
by :mod:`physicsml.io.predictions`.
"""

from physicsml.workflows.md import md_stage, md_starts, training_bond_lengths
from physicsml.workflows.models import load_trained, member_models, recalibrated
from physicsml.workflows.predict import predict_stage

__all__ = [
    "load_trained",
    "md_stage",
    "md_starts",
    "member_models",
    "predict_stage",
    "recalibrated",
    "training_bond_lengths",
]
