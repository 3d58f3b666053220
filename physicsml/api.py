"""The Python API: build, train, predict, save and load a model without DVC.

>>> from physicsml.api import Model
>>> model = Model.from_dict({"name": "egnn_model", "config": {"c_hidden": 32, "compute_forces": True,
...     "y_graph_scalars_loss_config": {"name": "MSELoss"}, "y_node_vector_loss_config": {"name": "MSELoss"}}})
>>> model.train(train_table, validation_table,
...             datamodule_config={"y_graph_scalars": ["energy"], "y_node_vector": "forces"},
...             trainer_config={"max_epochs": 10}, optimizer={"name": "Adam", "config": {"lr": 1e-3}})
>>> predictions = model.predict("new_structures.extxyz")   # {"energy": [G], "forces": [[N_i, 3], ...]}
>>> model.save("model.pt"); model = Model.load("model.pt")
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset

from physicsml.configs import DataModuleConfig, TrainerConfig, parse_config
from physicsml.data import keys as K
from physicsml.data.batch import batch_as_dict
from physicsml.data.collate import split_arrays, training_order
from physicsml.data.datasets import InMemoryBatches, make_dataloader
from physicsml.data.targets import TARGET_KINDS, selected_columns
from physicsml.errors import ConfigError
from physicsml.finetune import (
    StartingPoint,
    check_same_family,
    element_map,
    inherit_metadata,
    inherit_statistics,
    load_starting_weights,
    other_self_energies,
    refit_self_energies,
)
from physicsml.finetune import freeze as apply_freeze
from physicsml.graphs import build_graphs
from physicsml.io.arrow import read_table, table_metadata
from physicsml.lightning.datamodule import BatchesDataModule
from physicsml.lightning.module import PhysicsMLModule
from physicsml.lightning.trainer import build_trainer
from physicsml.model_file import read_model_file, write_model_file
from physicsml.models import get_family
from physicsml.models.ensemble import Ensemble, has_uncertainty, prediction_interval
from physicsml.models.statistics import resolve_auto


def _featurisation(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The featurisation part of a table's metadata (element list, self-energies), which a model keeps."""
    return {key: value for key, value in metadata.items() if key != "targets"}


#: Where :meth:`Model.embed` takes embeddings: each atom, or summed or averaged per structure.
EMBEDDING_LEVELS = ("node", "graph_sum", "graph_mean")


def attribute_widths(batches: Dataset) -> tuple[int, int, int]:
    """Widths of the ``atom_features``, ``graph_attrs`` and ``edge_attrs`` of ``batches`` (read from its
    first batch), so that nobody counts feature columns by hand."""
    first = batches[0] if len(batches) else None  # type: ignore[arg-type]
    return tuple(  # type: ignore[return-value]
        int(first[key].shape[-1]) if first is not None and key in first else 0
        for key in (K.ATOM_FEATURES, K.GRAPH_ATTRS, K.EDGE_ATTRS)
    )


def with_edge_width(name: str, config: dict[str, Any], width: int) -> dict[str, Any]:
    """``config`` with ``num_edge_feats`` set to the batches' edge attribute width.

    Raises:
        ValueError: for edge attributes a family cannot read, or a ``num_edge_feats`` the data contradicts.
    """
    if not get_family(name).edge_attrs:
        if width:
            raise ValueError(f"{name} cannot read edge attributes (bond features): remove featurise.bond_features")
        return config
    given = int(config.get("num_edge_feats") or 0)
    if given and given != width:
        raise ValueError(f"num_edge_feats is {given} but the batches carry {width} edge attributes: leave it 0")
    return {**config, "num_edge_feats": width}


def _chemistry_used(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The featurisation's chemistry settings when it computed any atom or bond features."""
    settings = metadata.get("chemistry") or {}
    used = settings.get("atom_features") or settings.get("bond_features") or settings.get("formal_charges")
    return dict(settings) if used else None


def _ensemble_signature(model: Model) -> dict[str, Any]:
    """What every member of an ensemble must share."""
    module = model._require_module()
    datamodule = module.datamodule_config
    energies = model.metadata.get("atomic_energies") or {}
    return {
        "element list": list(model.metadata.get("elements", [])),
        "self-energies": {key: round(float(value), 8) for key, value in energies.items()},
        "targets": selected_columns(datamodule),
        "cut-off": datamodule.cut_off,
        "graph attributes": datamodule.graph_attrs_cols,
        "chemistry (atom and bond features)": _chemistry_used(model.metadata),
        "self-energies per formal charge": model.metadata.get("atomic_energies_by_charge"),
        "float precision": str(next(module.parameters()).dtype),
    }


def _without_missing_targets(config: DataModuleConfig, columns: Sequence[str]) -> DataModuleConfig:
    """``config`` with every target selection the table has no column for removed."""
    missing = {key: None for key, names in selected_columns(config).items() if not set(names) <= set(columns)}
    return config.model_copy(update=missing)


class Model:
    """A model family with its config; trains through Lightning, predicts per target.

    Args:
        name: registered family (``egnn_model``, ...).
        config: the family's config dict (hyperparameters, losses, ``compute_forces``).
    """

    #: Keys of a reference-style config that configure training rather than the network.
    TRAINING_KEYS = ("datamodule", "trainer", "optimizer", "scheduler")
    #: Keys of a reference-style config that name dataset columns, which the featurised schema fixes.
    COLUMN_KEYS = ("x_features", "y_features")

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        config = dict(config or {})
        self.name = name
        self.defaults = {key: config.pop(key) for key in self.TRAINING_KEYS if key in config}
        for key in self.COLUMN_KEYS:
            config.pop(key, None)
        self.config = config
        self.module: PhysicsMLModule | None = None
        self.metadata: dict[str, Any] = {}
        self.trainer: Any = None
        self.start: StartingPoint | None = None
        #: Name, config and hparams of each member of an ensemble made by :meth:`ensemble`.
        self.members: list[dict[str, Any]] = []

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Model:
        """From ``{"name": ..., "config": {...}}``, the reference's model dict.

        ``datamodule``, ``trainer``, ``optimizer`` and ``scheduler`` inside ``config``
        become the defaults of :meth:`train`; ``x_features``/``y_features`` are not
        needed (the featurised tables fix the columns) and are ignored.
        """
        return cls(spec["name"], spec.get("config"))

    # ---- data ----------------------------------------------------------------------

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
        prebatch stage batches a training split.
        """
        if isinstance(data, Dataset):
            return data
        table = self._table(data)
        if training:
            table = table.take(training_order(table.num_rows))
        if not labelled:
            datamodule = _without_missing_targets(datamodule, table.column_names)
        metadata = _featurisation(table_metadata(table))
        if metadata.get("elements") and not self.metadata:
            self.metadata = metadata
        graphs = build_graphs(table, datamodule.cut_off, datamodule.pbc, datamodule.cell, datamodule.self_interaction)
        num_elements = datamodule.num_elements or len(metadata.get("elements", []))
        batches = InMemoryBatches(split_arrays(table, graphs, datamodule, "config"), batch_size, num_elements, dtype)
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

    def _table(self, data: Any) -> pa.Table:
        from physicsml.featurise import featurise_like
        from physicsml.io.structures import read_structures, structures_from_atoms

        if isinstance(data, pa.Table):
            return data
        if isinstance(data, (str, os.PathLike)) and str(data).endswith(".arrow"):
            table = read_table(data)
            if table_metadata(table).get("elements"):
                return table
        if not self.metadata:
            raise ValueError(
                "structures can only be featurised for a model that knows its element list: train it on a featurised table first"
            )
        structures = read_structures(data) if isinstance(data, (str, os.PathLike)) else structures_from_atoms(data)
        return featurise_like(structures, self.metadata)

    # ---- training ------------------------------------------------------------------

    def build(
        self,
        datamodule: DataModuleConfig,
        num_elements: int,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        num_atom_features: int = 0,
        num_graph_attrs: int = 0,
    ) -> PhysicsMLModule:
        """Create the Lightning module (weights freshly initialised)."""
        self.module = PhysicsMLModule(
            self.name,
            self.config,
            datamodule.model_dump(),
            optimizer,
            scheduler,
            num_elements,
            num_atom_features,
            num_graph_attrs,
        )
        return self.module

    def train(
        self,
        train_data: Any,
        validation_data: Any = None,
        datamodule_config: dict[str, Any] | DataModuleConfig | None = None,
        trainer_config: dict[str, Any] | TrainerConfig | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        ckpt_path: str | None = None,
        logger: Any = False,
        callbacks: Sequence[Any] = (),
        seed: int = 0,
        init: Literal["continue", "fresh"] = "continue",
        freeze: Sequence[str] | None = None,
        self_energies: Literal["data", "model"] = "data",
        data_metadata: Mapping[str, Any] | None = None,
    ) -> Model:
        """Train on ``train_data`` (validating on ``validation_data``) with Lightning.

        A model that has weights (loaded, trained before, or given a base model with
        :meth:`start_from`) continues from them: its element list and hyperparameters are
        kept, and data statistics (``scaling_*``, ``avg_num_neighbours``) are not recomputed.

        Args:
            ckpt_path: a checkpoint to resume from, or ``"last"`` for the newest in
                the trainer's checkpoint directory.
            init: ``"continue"`` from the model's weights, or ``"fresh"``: initialise anew.
            freeze: parameter-name patterns (fnmatch, e.g. ``"backbone.layers.0.*"``; names as in
                ``model.module.net.named_parameters()``) whose values stay fixed. ``None``:
                nothing, except on a modified model (``ssf_*``, ``adapter_*``), where all but
                the modifier's parameters stay fixed.
            self_energies: when continuing, ``"data"``: the self-energies featurise computed
                for the new data (fine-tuning to another level of theory), or ``"model"``: the
                model's own.
            data_metadata: the featurisation metadata of ``train_data`` when it is a batch
                dataset (tables carry their own).
        """
        import lightning.pytorch as pl

        pl.seed_everything(seed, workers=True, verbose=False)
        datamodule_config = self.defaults.get("datamodule") if datamodule_config is None else datamodule_config
        trainer_config = self.defaults.get("trainer") if trainer_config is None else trainer_config
        optimizer = self.defaults.get("optimizer") if optimizer is None else optimizer
        scheduler = self.defaults.get("scheduler") if scheduler is None else scheduler
        datamodule = (
            datamodule_config
            if isinstance(datamodule_config, DataModuleConfig)
            else parse_config(DataModuleConfig, datamodule_config or {}, "config", "datamodule")
        )
        trainer_cfg = (
            trainer_config
            if isinstance(trainer_config, TrainerConfig)
            else parse_config(TrainerConfig, trainer_config or {}, "config", "trainer")
        )
        dtype = np.float64 if int(trainer_cfg.precision) == 64 else np.float32
        if init not in ("continue", "fresh"):
            raise ValueError(f"init must be 'continue' or 'fresh', got {init!r}")
        start = self.start
        if start is None and init == "continue" and self.module is not None and ckpt_path is None:
            start = self._starting_point("the model's own weights")
        data_metadata = _featurisation(data_metadata or self._metadata_of(train_data))
        if start is not None:
            self.metadata = inherit_metadata(start.metadata, data_metadata, self_energies)
        elif data_metadata.get("elements") and (self.module is None or init == "fresh"):
            self.metadata = data_metadata
        train = self.as_batches(train_data, datamodule, datamodule.train.batch_size, dtype, training=True)
        validation = (
            None
            if validation_data is None
            else self.as_batches(validation_data, datamodule, datamodule.validation.batch_size, dtype)
        )
        for batches in (train, validation):
            if isinstance(batches, Dataset) and data_metadata:
                self.adapt_batches(batches, data_metadata)
        num_elements = (
            datamodule.num_elements or len(self.metadata.get("elements", [])) or getattr(train, "num_elements", 0)
        )
        if self.module is None or ckpt_path is None:
            fields = get_family(self.name).config.model_fields
            if start is not None:
                check_same_family(self.name, start)
                self.config = inherit_statistics(self.config, start.config)
            if "elements" in fields and self.config.get("elements") is None and self.metadata.get("elements"):
                self.config = {**self.config, "elements": list(self.metadata["elements"])}
            graph = datamodule.y_graph_scalars or []
            energy_column = (
                graph.index(self.config["energy_target"]) if self.config.get("energy_target") in graph else 0
            )
            self.config = resolve_auto(self.config, train, fields, energy_column)  # type: ignore[arg-type]
            atom_width, graph_width, edge_width = attribute_widths(train)
            self.config = with_edge_width(self.name, self.config, edge_width)
            self.build(datamodule, num_elements, optimizer, scheduler, atom_width, graph_width)
            if start is not None:
                load_starting_weights(self._require_module(), start, self.config)
                if self_energies == "data" and other_self_energies(data_metadata, start.metadata):
                    energies = refit_self_energies(self._require_module().net, train, self.metadata, energy_column)
                    self.metadata = {**self.metadata, "atomic_energies": energies}
                    for batches in (train, validation):
                        if batches is not None:
                            self.adapt_batches(batches, data_metadata)
        apply_freeze(self._require_module().net, freeze)
        self.start = None
        self.trainer = build_trainer(trainer_cfg, logger=logger, extra_callbacks=callbacks)
        data = BatchesDataModule(train, validation, datamodule.num_workers, seed)
        self.trainer.fit(self.module, datamodule=data, ckpt_path=ckpt_path)
        return self

    def start_from(self, base: Model, source: str = "the base model") -> Model:
        """Make the next :meth:`train` start from ``base``'s weights, element list and statistics.

        ``base`` must be of the same family (this model may add a modifier to it: an
        ``ssf_mace_model`` from a ``mace_model``); hyperparameters that change a weight's
        shape are an error naming the keys that differ.
        """
        self.start = base._starting_point(source)
        return self

    def _starting_point(self, source: str) -> StartingPoint:
        module = self._require_module()
        state = {key: value.detach().clone() for key, value in module.state_dict().items()}
        return StartingPoint(self.name, dict(self.config), dict(self.metadata), state, source)

    @staticmethod
    def _metadata_of(data: Any) -> dict[str, Any]:
        if isinstance(data, pa.Table):
            return table_metadata(data)
        if isinstance(data, (str, os.PathLike)) and str(data).endswith(".arrow"):
            return table_metadata(read_table(data))
        return {}

    # ---- prediction ----------------------------------------------------------------

    @property
    def has_uncertainty(self) -> bool:
        """Whether the model predicts a standard deviation with each value (mean-variance heads or an ensemble)."""
        return has_uncertainty(self._require_module().net)

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
        module = self._require_module()
        if with_std and not self.has_uncertainty:
            raise ValueError(
                f"{self.name} predicts no uncertainty: train a mean_var_* model or combine several with Model.ensemble"
            )
        if confidence is not None and not (with_std and 0 < confidence < 1):
            raise ValueError(f"confidence must be in (0, 1) and needs with_std=True, got {confidence}")
        datamodule = module.datamodule_config
        dtype = np.float64 if next(module.parameters()).dtype == torch.float64 else np.float32
        batches = self.as_batches(data, datamodule, batch_size or datamodule.predict.batch_size, dtype, labelled=False)
        module.eval()
        collected: dict[str, list[np.ndarray]] = {}
        stds: dict[str, list[np.ndarray]] = {}
        edges: list[np.ndarray] = []
        for batch in make_dataloader(batches, shuffle=False):
            out = module(batch_as_dict(batch.to(module.device)))
            ptr = batch.ptr.cpu().numpy()
            cuts = {"node": ptr[1:-1]}
            if self.outputs_edges(out):  # edge outputs: cut per structure, with each edge's atoms in it
                edge_index = batch.edge_index.cpu().numpy().T  # [E, 2], batch-wide atom indices
                edge_graph = batch.batch.cpu().numpy()[edge_index[:, 0]]
                edge_ptr = np.searchsorted(edge_graph, np.arange(len(ptr)))  # edges are grouped by structure
                cuts["edge"] = edge_ptr[1:-1]
                edges.extend(np.split(edge_index - ptr[edge_graph][:, None], edge_ptr[1:-1]))
            for key, kind in TARGET_KINDS.items():
                for name, target in ((kind.output, collected), (K.variance(kind.output), stds)):
                    if name not in out or (target is stds and not with_std):
                        continue
                    value = out[name].detach().cpu().numpy()
                    value = np.sqrt(value) if target is stds else value
                    if kind.level in cuts:
                        target.setdefault(key, []).extend(np.split(value, cuts[kind.level]))
                    else:
                        target.setdefault(key, []).append(value)
        columns = selected_columns(datamodule)
        result = self._by_name(collected, columns)
        if edges:
            result["edge_index"] = edges
        for name, std in self._by_name(stds, columns).items():
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
        module = self._require_module()
        net = module.net
        if isinstance(net, Ensemble):
            raise ConfigError("embed", "model", "an ensemble has one embedding per member: embed each member's model")
        datamodule = module.datamodule_config
        dtype = np.float64 if next(module.parameters()).dtype == torch.float64 else np.float32
        batches = self.as_batches(data, datamodule, batch_size or datamodule.predict.batch_size, dtype, labelled=False)
        module.eval()
        parts: list[np.ndarray] = []
        backbone: Any = net.backbone
        backbone.keep_blocks = True
        try:
            for batch in make_dataloader(batches, shuffle=False):
                batch_data = batch_as_dict(batch.to(module.device))
                with torch.no_grad():
                    out = backbone(net.with_node_attrs(batch_data))
                blocks = [out[K.block_features(k)] for k in range(len(out)) if K.block_features(k) in out]
                if not -len(blocks) <= block < len(blocks):
                    count = f"{len(blocks)} blocks (0 to {len(blocks) - 1}, or -1 for the last)"
                    raise ConfigError("embed", "block", f"{self.name} has {count}")
                features = blocks[block]
                if level != "node":
                    counts = (batch_data[K.PTR][1:] - batch_data[K.PTR][:-1]).to(features.dtype)
                    pooled = features.new_zeros(len(counts), features.shape[1])
                    pooled.index_add_(0, batch_data[K.BATCH], features)
                    features = pooled / counts[:, None] if level == "graph_mean" else pooled
                parts.append(features.cpu().numpy())
        finally:
            backbone.keep_blocks = False
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype)

    @staticmethod
    def outputs_edges(out: Mapping[str, Any]) -> bool:
        """Whether a model output holds an edge-level prediction."""
        return any(kind.level == "edge" and kind.output in out for kind in TARGET_KINDS.values())

    @staticmethod
    def _by_name(collected: dict[str, list[np.ndarray]], columns: dict[str, list[str]]) -> dict[str, Any]:
        """Per-kind parts to one entry per column name: graph targets one array, atom and edge targets a
        list per structure.

        A prediction with no selected column (stress computed but not trained on) keeps its output key.
        """
        result: dict[str, Any] = {}
        for key, parts in collected.items():
            kind = TARGET_KINDS[key]
            names = columns.get(key) or [kind.output]
            per_structure = kind.level in ("node", "edge")
            values = parts if per_structure else [np.concatenate(parts)]
            for column, name in enumerate(names):
                per_column = values if not kind.many else [part[:, column] for part in values]
                result[name] = per_column if per_structure else per_column[0]
        return result

    # ---- persistence ---------------------------------------------------------------

    def _require_module(self) -> PhysicsMLModule:
        if self.module is None:
            raise RuntimeError("the model has no weights yet: train it or load a saved one")
        return self.module

    def save(self, path: str | os.PathLike) -> None:
        """Write weights, configs and the featurisation metadata to one file (atomically).

        An ensemble made by :meth:`ensemble` is one file too, with every member's configs.
        """
        module = self._require_module()
        payload: dict[str, Any] = {
            "name": self.name,
            "config": self.config,
            "hparams": dict(module.hparams),
            "metadata": self.metadata,
            "state_dict": module.state_dict(),
        }
        if self.members:
            payload["members"] = self.members
        write_model_file(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        """A model saved by :meth:`save`.

        Raises:
            InputError: when ``path`` does not exist or is not a model written by :meth:`save`.
        """
        payload = read_model_file(path)
        model = cls(payload["name"], payload["config"])
        model.metadata = payload["metadata"]
        model.module = PhysicsMLModule(**payload["hparams"])
        if payload.get("members"):
            model.members = payload["members"]
            model.module.net = Ensemble([PhysicsMLModule(**member["hparams"]).net for member in model.members])
        model.module.load_state_dict(payload["state_dict"])
        if any(v.dtype == torch.float64 for v in payload["state_dict"].values()):
            model.module.double()
        return model

    @classmethod
    def ensemble(cls, members: Sequence[Model | str | os.PathLike]) -> Model:
        """One model of several trained ones: it predicts their mean, and their spread as its std.

        Each member keeps its own weights (and may be of another family or a mean-variance
        model); they must have been trained on the same featurisation, targets and cut-off.

        Raises:
            ValueError: naming the first member that differs from the first one, and how.
        """
        models = [member if isinstance(member, Model) else cls.load(member) for member in members]
        if not models:
            raise ValueError("an ensemble needs at least one member")
        first = models[0]
        reference = _ensemble_signature(first)
        for k, model in enumerate(models[1:], start=1):
            for what, value in _ensemble_signature(model).items():
                if value != reference[what]:
                    raise ValueError(
                        f"ensemble member {k} has another {what} than member 0: {value} vs {reference[what]}"
                    )
        ensemble = cls(first.name, first.config)
        ensemble.metadata = dict(first.metadata)
        ensemble.members = [
            {"name": m.name, "config": m.config, "hparams": dict(m._require_module().hparams)} for m in models
        ]
        module = PhysicsMLModule(**ensemble.members[0]["hparams"])
        module.net = Ensemble([copy.deepcopy(m._require_module().net) for m in models])
        ensemble.module = module.to(next(first._require_module().parameters()).dtype)
        return ensemble

    def calculator(self, device: str = "cpu", dtype: str = "float32", skin: float = 0.5) -> Any:
        """This model as an ASE calculator (:class:`physicsml.ase.PhysicsMLCalculator`)."""
        from physicsml.ase import PhysicsMLCalculator

        return PhysicsMLCalculator(self, device=device, dtype=dtype, skin=skin)
