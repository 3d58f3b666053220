"""Model families, their variants and the networks built from them.

* :mod:`~physicsml.models.families`: the registry of families (config class, backbone, targets);
* :mod:`~physicsml.models.variants`: the registry of variants (SSF, adapter, mean-variance, ANI ensemble);
* :mod:`~physicsml.models.spec`: a model name resolved once into family, variant and config class;
* :mod:`~physicsml.models.network`: the one builder of networks (backbone, heads, variant);
* :mod:`~physicsml.models.derivatives`: forces and stress of the energy;
* :mod:`~physicsml.models.checks`: the ``model`` section of ``params.yaml`` checked before any data is read.
"""

from physicsml.models.base import Backbone, LossConfig, ModelConfig
from physicsml.models.checks import check_inputs, check_model_section, check_targets, section_config
from physicsml.models.families import MODELS, Family
from physicsml.models.spec import MODEL_NAMES, ModelSpec, resolve
from physicsml.models.variants import VARIANTS, Variant

__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "VARIANTS",
    "Backbone",
    "Family",
    "LossConfig",
    "ModelConfig",
    "ModelSpec",
    "Variant",
    "check_inputs",
    "check_model_section",
    "check_targets",
    "resolve",
    "section_config",
]
