"""Variants of a model family: registered objects, each with its options, how it changes the network and
how it trains.

A variant is named by its prefix of a family's name (``ssf_mace_model`` is the ``ssf``
variant of ``mace_model``, the reference's names). Each entry of :data:`VARIANTS` says

* which keys it adds to the family's config (:attr:`Variant.options`, defaults given once, there);
* what it changes in the outputs (:meth:`Variant.outputs`: mean-variance heads predict variances);
* what it attaches to a built network (:meth:`Variant.modify`: the fine-tuning modifiers);
* how many member networks it trains together (:meth:`Variant.members`: ``ensemble_ani_model``);
* whether, in an epoch, the configured losses train the mean only (:meth:`Variant.mean_only`).

Adding a variant is one class and one entry here (and, for a new kind of layer, its module in
:mod:`physicsml.nn`); nothing else parses model names.
"""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import Field
from torch import nn

from physicsml.nn.heads import Outputs
from physicsml.nn.modifiers import SSF, Adapter, attach


class Variant:
    """A variant that changes nothing; subclasses override what they change.

    Attributes:
        name: the prefix of the model name.
        options: the keys it adds to the family's config (``None``: none).
        families: the families it applies to (``None``: every family).
    """

    name = ""
    options: type[pydantic.BaseModel] | None = None
    families: tuple[str, ...] | None = None

    def outputs(self, outputs: Outputs) -> Outputs:
        """The outputs the network predicts, given the selected targets'."""
        return outputs

    def modify(self, backbone: nn.Module, config: Any) -> nn.Module | None:
        """Change a built ``backbone``; returns the modules to keep as the network's ``modifier``."""
        return None

    def members(self, config: Any) -> int:
        """How many networks are built and trained together (sharing ANI's AEV computer when more than one)."""
        return 1

    def mean_only(self, config: Any, epoch: int) -> bool:
        """Whether in ``epoch`` the configured losses train the mean alone (mean-variance models)."""
        return False


class SSFVariant(Variant):
    """``ssf_<family>``: scale and shift every linear layer's output (:class:`~physicsml.nn.modifiers.SSF`)."""

    name = "ssf"

    def modify(self, backbone: nn.Module, config: Any) -> nn.Module | None:
        return attach(backbone, SSF, adapters=False)


class AdapterOptions(pydantic.BaseModel):
    """The keys an ``adapter_<family>`` model adds to its family's config (the reference's names)."""

    ratio_adapter_down: int = Field(10, ge=1, description="Adapter width is the layer's channels // this.")
    initial_s: float = Field(0.01, description="Initial scale s of every adapter's output.")


class AdapterVariant(Variant):
    """``adapter_<family>``: a bottleneck around every linear layer (:class:`~physicsml.nn.modifiers.Adapter`)."""

    name = "adapter"
    options = AdapterOptions

    def modify(self, backbone: nn.Module, config: Any) -> nn.Module | None:
        return attach(
            backbone, lambda layer: Adapter(layer, config.ratio_adapter_down, config.initial_s), adapters=True
        )


class MeanVarOptions(pydantic.BaseModel):
    """The keys a ``mean_var_<family>`` model adds to its family's config."""

    mean_only_epochs: int | None = Field(
        None,
        ge=0,
        description="Epochs in which the configured losses train the mean while the variance heads learn the "
        "spread of its errors (Gaussian NLL, without acting on the mean); after them the NLL trains mean and "
        "variance together. null: every epoch, so the mean is as accurate as the plain family's.",
    )


class MeanVarVariant(Variant):
    """``mean_var_<family>``: variance heads beside the targets, trained with a Gaussian negative
    log-likelihood (:mod:`physicsml.nn.heads`)."""

    name = "mean_var"
    options = MeanVarOptions

    def outputs(self, outputs: Outputs) -> Outputs:
        return outputs._replace(variances=True)

    def mean_only(self, config: Any, epoch: int) -> bool:
        epochs = config.mean_only_epochs
        return epochs is None or epoch < epochs


class EnsembleOptions(pydantic.BaseModel):
    """The key ``ensemble_ani_model`` adds to ANI's config (the reference's name)."""

    n_models: int = Field(4, ge=1, description="Networks trained together on one AEV computer.")


class AniEnsembleVariant(Variant):
    """``ensemble_ani_model``, as in the reference: ``n_models`` ANI networks trained together on one
    atomic-environment computer (:class:`~physicsml.models.ensemble.Ensemble`)."""

    name = "ensemble"
    options = EnsembleOptions
    families = ("ani_model",)

    def members(self, config: Any) -> int:
        return int(config.n_models)


#: Every variant, by the prefix that names it.
VARIANTS: dict[str, Variant] = {
    variant.name: variant for variant in (SSFVariant(), AdapterVariant(), MeanVarVariant(), AniEnsembleVariant())
}
