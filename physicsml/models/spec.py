"""A model name resolved, once, into what builds it: its family, its variant and its config class.

>>> spec = resolve("ssf_mace_model")
>>> spec.family, spec.variant.name, spec.config      # "mace_model", "ssf", MACEConfig
>>> spec.config is resolve("adapter_mace_model").config   # False: the adapter adds its options

Names are the reference's: a family (``mace_model``) or ``<variant>_<family>``
(:data:`~physicsml.models.variants.VARIANTS`); this is the one place that reads them.
"""

from __future__ import annotations

import difflib
import functools
from typing import NamedTuple

import pydantic

from physicsml.models.base import ModelConfig
from physicsml.models.families import MODELS, Family
from physicsml.models.variants import VARIANTS, Variant


class ModelSpec(NamedTuple):
    """What a model name stands for.

    Attributes:
        name: the model name (``ssf_mace_model``).
        family: the family's name (``mace_model``).
        entry: the family's row of :data:`~physicsml.models.families.MODELS`.
        variant: the variant (a plain family: the one that changes nothing).
        config: the family's config class, extended by the variant's options.
    """

    name: str
    family: str
    entry: Family
    variant: Variant
    config: type[ModelConfig]

    def unsupported(self, predicted: set[str]) -> list[str]:
        """The keys of ``predicted`` (targets a head must predict) this model cannot predict."""
        return sorted(predicted - self.entry.targets)


_PLAIN = Variant()

#: Every valid ``model.name``: a family, or ``<variant>_<family>``.
MODEL_NAMES: tuple[str, ...] = (
    *MODELS,
    *(f"{kind}_{family}" for kind, variant in VARIANTS.items() for family in (variant.families or tuple(MODELS))),
)


def unknown_model(name: str) -> str:
    """The message for a name that is not a model's, with the closest valid one."""
    close = difflib.get_close_matches(name, list(MODEL_NAMES), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown model '{name}'{hint} Valid: {', '.join(MODEL_NAMES)}"


@functools.cache
def resolve(name: str) -> ModelSpec:
    """The spec of model ``name``.

    Raises:
        KeyError: listing the valid names, for an unknown one.
    """
    if name in MODELS:
        return ModelSpec(name, name, MODELS[name], _PLAIN, MODELS[name].config)
    if name in MODEL_NAMES:
        for kind, variant in VARIANTS.items():
            family = name.removeprefix(f"{kind}_")
            if family != name and family in MODELS:
                return ModelSpec(name, family, MODELS[family], variant, _with_options(family, variant))
    raise KeyError(unknown_model(name))


def _with_options(family: str, variant: Variant) -> type[ModelConfig]:
    base = MODELS[family].config
    if variant.options is None:
        return base
    fields = {name: (info.annotation, info) for name, info in variant.options.model_fields.items()}
    prefix = "".join(part.title() for part in variant.name.split("_"))
    return pydantic.create_model(f"{prefix}{base.__name__}", __base__=base, **fields)  # type: ignore[call-overload]
