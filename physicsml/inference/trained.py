"""A trained model: its network, what it was built from and its featurisation; loading, saving,
ensembles, prediction and embeddings, with no training code.

>>> model = TrainedModel.load("models/model.pt")
>>> model.predict("new_structures.extxyz")   # {"energy": [G], "forces": [[N_i, 3], ...]}

:class:`physicsml.api.Model` adds training to it; the simulation modules
(:mod:`physicsml.potential`, :mod:`physicsml.ase`, :mod:`physicsml.openmm`,
:mod:`physicsml.md`) take one of these.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from physicsml.configs import DataModuleConfig
from physicsml.data import keys as K
from physicsml.data.batch import batch_as_dict
from physicsml.data.datasets import make_dataloader
from physicsml.errors import ConfigError
from physicsml.inference.inputs import as_table, element_map, featurisation, table_batches
from physicsml.inference.model_file import file_state, net_state, read_model_file, write_model_file
from physicsml.inference.unpack import by_name, collect
from physicsml.io.arrow import table_metadata
from physicsml.models.derivatives import with_derivatives
from physicsml.models.ensemble import Ensemble, has_uncertainty, prediction_interval
from physicsml.models.network import Blueprint, Network, blueprint
from physicsml.targets import selected_columns

#: Where :meth:`TrainedModel.embed` takes embeddings: each atom, or summed or averaged per structure.
EMBEDDING_LEVELS = ("node", "graph_sum", "graph_mean")


class TrainedModel:
    """A model family with its config and, once built or loaded, its network.

    Args:
        name: registered model name (``egnn_model``, ``ssf_mace_model``, ...).
        config: the family's config dict (hyperparameters, losses, ``compute_forces``).
    """

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        self.name = name
        self.config = dict(config or {})
        #: The featurisation it reads: element list, self-energies, chemistry settings.
        self.metadata: dict[str, Any] = {}
        #: What its network is built from, as the model file stores it.
        self.hparams: dict[str, Any] = {}
        #: Name, config and hparams of each member of an ensemble made by :meth:`ensemble`.
        self.members: list[dict[str, Any]] = []
        self.blueprint: Blueprint | None = None
        self._net: Network | Ensemble | None = None

    # ---- the network -----------------------------------------------------------------

    def adopt(self, net: Network | Ensemble, plan: Blueprint, hparams: Mapping[str, Any]) -> None:
        """Hold ``net``, built from ``plan`` (itself read from ``hparams``)."""
        self._net, self.blueprint, self.hparams = net, plan, dict(hparams)

    def built(self) -> tuple[Network | Ensemble, Blueprint]:
        """The network and its blueprint (raises ``RuntimeError`` before the model is built, trained or loaded)."""
        if self._net is None or self.blueprint is None:
            raise RuntimeError("the model has no weights yet: train it or load a saved one")
        return self._net, self.blueprint

    @property
    def net(self) -> Network | Ensemble:
        """The network."""
        return self.built()[0]

    @property
    def datamodule(self) -> DataModuleConfig:
        """The datamodule config it was trained with: target selections, cut-off, graph attributes."""
        return self.built()[1].datamodule

    @property
    def energy_name(self) -> str | None:
        """The column name of the energy (``None`` when no graph scalar is predicted)."""
        outputs = self.built()[1].outputs
        return outputs.graph_scalars[outputs.energy] if outputs.energy is not None else None

    @property
    def std_scale(self) -> dict[str, float]:
        """Factor per target name that multiplies every predicted std (1 where absent): a recalibration
        fitted on held-out data (:func:`physicsml.evaluate.recalibrate`), saved with the model."""
        return {str(name): float(factor) for name, factor in (self.metadata.get("std_scale") or {}).items()}

    @property
    def std_scale_of_kind(self) -> dict[str, float]:
        """:attr:`std_scale` of the ``energy``, ``forces`` and ``stress`` the simulation paths return, whatever
        their column names (1 for a kind the model has no factor for)."""
        columns = {key: names[0] for key, names in selected_columns(self.datamodule).items()}
        kinds = {"energy": self.energy_name, "forces": columns.get("y_node_vector"), "stress": columns.get("y_stress")}
        return {kind: self.std_scale.get(str(column), 1.0) for kind, column in kinds.items()}

    @property
    def has_uncertainty(self) -> bool:
        """Whether the model predicts a standard deviation with each value (mean-variance heads or an ensemble)."""
        return has_uncertainty(self.net)

    def _numpy_dtype(self) -> Any:
        return np.float64 if next(self.net.parameters()).dtype == torch.float64 else np.float32

    # ---- inputs ----------------------------------------------------------------------

    def table(self, data: Any) -> Any:
        """``data`` as a featurised table (:func:`~physicsml.inference.inputs.as_table`), featurised like
        the model's training data when it is structures."""
        return as_table(data, self.metadata)

    def as_batches(
        self,
        data: Any,
        datamodule: DataModuleConfig,
        batch_size: int,
        dtype: Any,
        labelled: bool = True,
        training: bool = False,
    ) -> Dataset:
        """Batches from a batch dataset, a featurised table (or its .arrow path), structures or a file.

        With ``labelled=False`` (prediction) targets the data does not carry are left out; with
        ``training`` the rows are batched in :func:`~physicsml.data.collate.training_order`, as the
        prebatch stage batches a training split. A model without a featurisation takes the table's.
        """
        if isinstance(data, Dataset):
            return data
        table = as_table(data, self.metadata)
        metadata = featurisation(table_metadata(table))
        if metadata.get("elements") and not self.metadata:
            self.metadata = metadata
        num_elements = datamodule.num_elements or len(metadata.get("elements", []))
        batches = table_batches(table, datamodule, batch_size, dtype, num_elements, labelled, training)
        return self.adapt_batches(batches, metadata)

    def adapt_batches(self, batches: Dataset, data_metadata: Mapping[str, Any]) -> Dataset:
        """Let this model read ``batches`` featurised with another element list or other self-energies.

        A fine-tuned model keeps its base model's element list; data featurised on its
        own has its own list (a subset) and, when the model keeps the base's self-energies,
        other ones. This re-indexes the species (and recomputes ``total_atomic_energy``)
        batch by batch.

        Raises:
            ValueError: for an element of the data the model does not know.
        """
        if self.metadata.get("elements") and data_metadata.get("elements") and hasattr(batches, "elements"):
            batches.elements = element_map(data_metadata, self.metadata)
        return batches

    # ---- prediction ------------------------------------------------------------------

    def predict(
        self, data: Any, batch_size: int | None = None, with_std: bool = False, confidence: float | None = None
    ) -> dict[str, Any]:
        """Predictions per target name: graph targets as arrays ``[G, ...]``, atom targets as
        one array per structure (``[N_i, ...]``), ``stress`` as ``[G, 3, 3]`` when computed.
        Edge targets are one array per structure (``[E_i, ...]``), on the edges listed
        under ``edge_index`` (``[E_i, 2]`` receiver and sender in the structure).

        Args:
            with_std: add ``<name>_std``, the predicted standard deviation of each value
                (a model with an uncertainty only, see :attr:`has_uncertainty`).
            confidence: with ``with_std``, add the Gaussian prediction interval holding the
                value with this probability as ``<name>_low`` and ``<name>_high``.

        Raises:
            ValueError: ``with_std`` for a model without an uncertainty, or a confidence outside (0, 1).
        """
        net, plan = self.built()
        if with_std and not self.has_uncertainty:
            raise ValueError(
                f"{self.name} predicts no uncertainty: train a mean_var_* model or combine several with Model.ensemble"
            )
        if confidence is not None and not (with_std and 0 < confidence < 1):
            raise ValueError(f"confidence must be in (0, 1) and needs with_std=True, got {confidence}")
        size = batch_size or plan.datamodule.predict.batch_size
        batches = self.as_batches(data, plan.datamodule, size, self._numpy_dtype(), labelled=False)
        net.eval()
        device = next(net.parameters()).device
        forces, stress = plan.config.compute_forces, plan.config.compute_stress

        def forward(batch: Any) -> dict[str, torch.Tensor]:
            return with_derivatives(net, batch_as_dict(batch.to(device)), forces, stress)

        collected = collect(forward, make_dataloader(batches, shuffle=False), with_std)
        columns = selected_columns(plan.datamodule)
        result = by_name(collected.values, columns)
        if collected.edges:
            result["edge_index"] = collected.edges
        scale = self.std_scale
        for name, std in by_name(collected.variances, columns).items():
            factor = scale.get(name, 1.0)
            std = [part * factor for part in std] if isinstance(std, list) else std * factor
            result[f"{name}_std"] = std
            if confidence is not None:
                low, high = prediction_interval(result[name], std, confidence)
                result[f"{name}_low"], result[f"{name}_high"] = low, high
        return result

    def embed(self, data: Any, level: str = "graph_mean", block: int = -1, batch_size: int | None = None) -> np.ndarray:
        """The model's invariant features of ``data`` (structures, a file or a featurised table).

        Args:
            level: ``"node"``: ``[atoms, F]``, every atom in order; ``"graph_sum"``/``"graph_mean"``:
                ``[structures, F]``, summed or averaged over each structure's atoms.
            block: the block (interaction layer) whose output to take, ``-1`` the last (ANI: 0 is
                the AEV, 1 the last hidden layer).

        Raises:
            ValueError: for an unknown level, a block the model does not have, or an ensemble.
        """
        if level not in EMBEDDING_LEVELS:
            raise ConfigError("embed", "level", f"must be one of {', '.join(EMBEDDING_LEVELS)}, got {level!r}")
        net = self.net
        if isinstance(net, Ensemble):
            raise ConfigError("embed", "model", "an ensemble has one embedding per member: embed each member's model")
        datamodule = self.datamodule
        dtype = self._numpy_dtype()
        batches = self.as_batches(data, datamodule, batch_size or datamodule.predict.batch_size, dtype, labelled=False)
        net.eval()
        device = next(net.parameters()).device
        backbone: Any = net.backbone
        backbone.keep_blocks = True
        try:
            parts = [
                self._embed_batch(net, batch_as_dict(batch.to(device)), level, block)
                for batch in make_dataloader(batches, shuffle=False)
            ]
        finally:
            backbone.keep_blocks = False
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype)

    def _embed_batch(self, net: Network, data: dict[str, torch.Tensor], level: str, block: int) -> np.ndarray:
        with torch.no_grad():
            out = net.backbone(net.with_node_attrs(data))
        blocks = [out[K.block_features(k)] for k in range(len(out)) if K.block_features(k) in out]
        if not -len(blocks) <= block < len(blocks):
            count = f"{len(blocks)} blocks (0 to {len(blocks) - 1}, or -1 for the last)"
            raise ConfigError("embed", "block", f"{self.name} has {count}")
        features = blocks[block]
        if level != "node":
            counts = (data[K.PTR][1:] - data[K.PTR][:-1]).to(features.dtype)
            pooled = features.new_zeros(len(counts), features.shape[1])
            pooled.index_add_(0, data[K.BATCH], features)
            features = pooled / counts[:, None] if level == "graph_mean" else pooled
        return features.cpu().numpy()

    # ---- persistence -----------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write weights, configs and the featurisation metadata to one file (atomically).

        An ensemble made by :meth:`ensemble` is one file too, with every member's configs.
        """
        payload: dict[str, Any] = {
            "name": self.name,
            "config": self.config,
            "hparams": dict(self.hparams),
            "metadata": self.metadata,
            "state_dict": file_state(self.net),
        }
        if self.members:
            payload["members"] = self.members
        write_model_file(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Any:
        """A model saved by :meth:`save` (an instance of the class it is called on).

        Raises:
            InputError: when ``path`` does not exist or is not a model written by :meth:`save`.
        """
        payload = read_model_file(path)
        model = cls(payload["name"], payload["config"])
        model.metadata = payload["metadata"]
        plan = blueprint(payload["hparams"])
        members = payload.get("members") or []
        net = Ensemble([blueprint(member["hparams"]).build() for member in members]) if members else plan.build()
        model.members = list(members)
        state = payload["state_dict"]
        if any(value.dtype == torch.float64 for value in state.values()):
            net.double()  # before the weights are copied in, so that none is rounded to float32 on the way
        net.load_state_dict(net_state(state))
        model.adopt(net, plan, payload["hparams"])
        return model

    @classmethod
    def ensemble(cls, members: Sequence[TrainedModel | str | os.PathLike]) -> Any:
        """One model of several trained ones: it predicts their mean, and their spread as its std.

        Each member keeps its own weights (and may be of another family or a mean-variance
        model); they must have been trained on the same featurisation, targets and cut-off.

        Raises:
            ValueError: naming the first member that differs from the first one, and how.
        """
        models = [member if isinstance(member, TrainedModel) else cls.load(member) for member in members]
        if not models:
            raise ValueError("an ensemble needs at least one member")
        first = models[0]
        reference = ensemble_signature(first)
        for k, model in enumerate(models[1:], start=1):
            for what, value in ensemble_signature(model).items():
                if value != reference[what]:
                    raise ValueError(
                        f"ensemble member {k} has another {what} than member 0: {value} vs {reference[what]}"
                    )
        ensemble = cls(first.name, first.config)
        ensemble.metadata = dict(first.metadata)
        ensemble.members = [{"name": m.name, "config": m.config, "hparams": dict(m.hparams)} for m in models]
        net = Ensemble([copy.deepcopy(m.net) for m in models]).to(next(first.net.parameters()).dtype)
        ensemble.adopt(net, blueprint(ensemble.members[0]["hparams"]), ensemble.members[0]["hparams"])
        return ensemble


def _chemistry_used(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The featurisation's chemistry settings when it computed any atom or bond features."""
    settings = metadata.get("chemistry") or {}
    used = settings.get("atom_features") or settings.get("bond_features") or settings.get("formal_charges")
    return dict(settings) if used else None


def ensemble_signature(model: TrainedModel) -> dict[str, Any]:
    """What every member of an ensemble must share."""
    datamodule = model.datamodule
    energies = model.metadata.get("atomic_energies") or {}
    return {
        "element list": list(model.metadata.get("elements", [])),
        "self-energies": {key: round(float(value), 8) for key, value in energies.items()},
        "targets": selected_columns(datamodule),
        "cut-off": datamodule.cut_off,
        "graph attributes": datamodule.graph_attrs_cols,
        "chemistry (atom and bond features)": _chemistry_used(model.metadata),
        "self-energies per formal charge": model.metadata.get("atomic_energies_by_charge"),
        "float precision": str(next(model.net.parameters()).dtype),
    }
