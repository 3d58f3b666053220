"""The Python API: build, train, predict, save and load a model without DVC.

>>> from physicsml.api import Model
>>> model = Model.from_dict({"name": "egnn_model", "config": {"c_hidden": 32, "compute_forces": True,
...     "y_graph_scalars_loss_config": {"name": "MSELoss"}, "y_node_vector_loss_config": {"name": "MSELoss"}}})
>>> model.train(train_table, validation_table,
...             datamodule_config={"y_graph_scalars": ["energy"], "y_node_vector": "forces"},
...             trainer_config={"max_epochs": 10}, optimizer={"name": "Adam", "config": {"lr": 1e-3}})
>>> predictions = model.predict("new_structures.extxyz")   # {"energy": [G], "forces": [[N_i, 3], ...]}
>>> model.save("model.pt"); model = Model.load("model.pt")

:class:`Model` is a :class:`~physicsml.inference.trained.TrainedModel` (loading, saving,
ensembles, prediction, embeddings) that can also train, through Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import Dataset

from physicsml.ase import PhysicsMLCalculator
from physicsml.configs import DataModuleConfig, TrainerConfig, parse_config
from physicsml.data import keys as K
from physicsml.data.datasets import MixedBatches
from physicsml.finetune import (
    StartingPoint,
    check_cut_off,
    check_same_family,
    fine_tuning_line,
    inherit_metadata,
    inherit_network,
    load_starting_weights,
    refit_self_energies,
    starting_point,
)
from physicsml.finetune import freeze as apply_freeze
from physicsml.inference.inputs import attribute_widths, featurisation, metadata_of, other_self_energies
from physicsml.inference.model_file import FINE_TUNING
from physicsml.inference.trained import EMBEDDING_LEVELS, TrainedModel
from physicsml.lightning.datamodule import BatchesDataModule
from physicsml.lightning.module import PhysicsMLModule
from physicsml.lightning.trainer import build_trainer
from physicsml.models.spec import resolve
from physicsml.models.statistics import resolve_auto
from physicsml.targets import selected_columns

__all__ = ["EMBEDDING_LEVELS", "Model", "attribute_widths", "with_edge_width"]


def with_edge_width(name: str, config: dict[str, Any], width: int) -> dict[str, Any]:
    """``config`` with ``num_edge_feats`` set to the batches' edge attribute width.

    Raises:
        ValueError: for edge attributes a family cannot read, or a ``num_edge_feats`` the data contradicts.
    """
    if not resolve(name).entry.edge_attrs:
        if width:
            raise ValueError(f"{name} cannot read edge attributes (bond features): remove featurise.bond_features")
        return config
    given = int(config.get("num_edge_feats") or 0)
    if given and given != width:
        raise ValueError(f"num_edge_feats is {given} but the batches carry {width} edge attributes: leave it 0")
    return {**config, "num_edge_feats": width}


def _parsed(cls: Any, value: Any, prefix: str) -> Any:
    return value if isinstance(value, cls) else parse_config(cls, value or {}, "config", prefix)


class Model(TrainedModel):
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
        defaults = {key: config.pop(key) for key in self.TRAINING_KEYS if key in config}
        for key in self.COLUMN_KEYS:
            config.pop(key, None)
        super().__init__(name, config)
        self.defaults = defaults
        self.module: PhysicsMLModule | None = None
        self.trainer: Any = None
        self.start: StartingPoint | None = None

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Model:
        """From ``{"name": ..., "config": {...}}``, the reference's model dict.

        ``datamodule``, ``trainer``, ``optimizer`` and ``scheduler`` inside ``config``
        become the defaults of :meth:`train`; ``x_features``/``y_features`` are not
        needed (the featurised tables fix the columns) and are ignored.
        """
        return cls(spec["name"], spec.get("config"))

    def build(
        self,
        datamodule: DataModuleConfig,
        num_elements: int,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        num_atom_features: int = 0,
        num_graph_attrs: int = 0,
    ) -> PhysicsMLModule:
        """Create the network (weights freshly initialised) and the Lightning module that trains it."""
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
        self.adopt(self.module.net, self.module.plan, self.module.hparams)
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
        compile: bool = False,  # noqa: A002 (torch's own word for it)
        replay: Dataset | None = None,
    ) -> Model:
        """Train on ``train_data`` (validating on ``validation_data``) with Lightning. A model that has
        weights (loaded, trained before, or given a base model with :meth:`start_from`) continues from
        them: its element list, hyperparameters and statistics (``scaling_*``, ...) are kept.

        Args:
            ckpt_path: a checkpoint to resume from, or ``"last"`` for the newest in
                the trainer's checkpoint directory.
            init: ``"continue"`` from the model's weights, or ``"fresh"``: initialise anew.
            freeze: parameter-name patterns (fnmatch, e.g. ``"backbone.layers.0.*"``; names as in
                ``model.net.named_parameters()``) whose values stay fixed. ``None``:
                nothing, except on a modified model (``ssf_*``, ``adapter_*``), where all but
                the modifier's parameters stay fixed.
            self_energies: when continuing, ``"data"``: the self-energies featurise computed
                for the new data (fine-tuning to another level of theory), or ``"model"``: the
                model's own.
            data_metadata: the featurisation metadata of ``train_data`` when it is a batch
                dataset (tables carry their own).
            compile: training steps through :class:`~physicsml.models.compiled.CompiledTraining`.
            replay: batches of the starting model's domain (its element list, weighted) trained on too.
        """
        pl.seed_everything(seed, workers=True, verbose=False)
        datamodule = _parsed(DataModuleConfig, self._given(datamodule_config, "datamodule"), "datamodule")
        trainer_cfg = _parsed(TrainerConfig, self._given(trainer_config, "trainer"), "trainer")
        optimizer, scheduler = self._given(optimizer, "optimizer"), self._given(scheduler, "scheduler")
        dtype = np.float64 if int(trainer_cfg.precision) == 64 else np.float32
        start = self._starting_point(init, ckpt_path)
        data_metadata = featurisation(data_metadata or metadata_of(train_data))
        self._take_metadata(start, data_metadata, self_energies, init)
        train, validation = self._training_batches(train_data, validation_data, datamodule, dtype, data_metadata)
        module = self._module_for(
            train, validation, data_metadata, ckpt_path, (datamodule, optimizer, scheduler, start, self_energies)
        )
        self.net.to(torch.float64 if dtype is np.float64 else torch.float32)  # a float64 start, in this precision
        apply_freeze(self.net, freeze)
        module.compile_training, self.start = compile, None
        self.trainer = build_trainer(trainer_cfg, logger=logger, extra_callbacks=callbacks)
        mixed = train if replay is None else MixedBatches(train, replay)
        self.trainer.fit(
            module, datamodule=BatchesDataModule(mixed, validation, datamodule.num_workers, seed), ckpt_path=ckpt_path
        )
        return self

    def _take_metadata(self, start: StartingPoint | None, data_metadata: dict, self_energies: str, init: str) -> None:
        """The model's elements and self-energies: the starting point's with the data's, or the data's
        for a model that has none yet (or starts fresh). A recalibration of the stds (``std_scale``) is
        dropped: it was fitted to the errors of weights this training changes."""
        if start is not None:
            self.metadata = inherit_metadata(start.metadata, data_metadata, self_energies)
        elif data_metadata.get("elements") and (self._net is None or init == "fresh"):
            self.metadata = data_metadata
        self.metadata = {key: value for key, value in self.metadata.items() if key not in ("std_scale", FINE_TUNING)}

    def _module_for(
        self, train: Dataset, validation: Dataset | None, data_metadata: dict, ckpt_path: str | None, build: tuple
    ) -> PhysicsMLModule:
        """The LightningModule to fit: built for the data (:meth:`_build_for`), or, for a loaded model
        resumed from a checkpoint, around the network it holds."""
        if self._net is None or ckpt_path is None:
            self._build_for(train, validation, data_metadata, *build)
        elif self.module is None:
            self.module = PhysicsMLModule(**self.hparams, net=self.net)
        assert self.module is not None  # built above, or given
        return self.module

    def _starting_point(self, init: str, ckpt_path: str | None) -> StartingPoint | None:
        """What training starts from: a base model (:meth:`start_from`), the model's own weights
        (``init="continue"``, without a checkpoint to resume), or nothing."""
        if init not in ("continue", "fresh"):
            raise ValueError(f"init must be 'continue' or 'fresh', got {init!r}")
        if self.start is None and init == "continue" and self._net is not None and ckpt_path is None:
            return starting_point(self, "the model's own weights")
        return self.start

    def _training_batches(
        self, train_data: Any, validation_data: Any, datamodule: DataModuleConfig, dtype: Any, data_metadata: dict
    ) -> tuple[Dataset, Dataset | None]:
        """Training batches (in :func:`~physicsml.data.collate.training_order`) and validation batches,
        both read with this model's featurisation."""
        train = self.as_batches(train_data, datamodule, datamodule.train.batch_size, dtype, training=True)
        validation = (
            None
            if validation_data is None
            else self.as_batches(validation_data, datamodule, datamodule.validation.batch_size, dtype)
        )
        for batches in (train, validation):
            if isinstance(batches, Dataset) and data_metadata:
                self.adapt_batches(batches, data_metadata)
        return train, validation

    def _given(self, value: Any, key: str) -> Any:
        """An argument of :meth:`train`, or the default given in the config (``from_dict``) when it is ``None``."""
        return self.defaults.get(key) if value is None else value

    def _build_for(
        self,
        train: Dataset,
        validation: Dataset | None,
        data_metadata: dict[str, Any],
        datamodule: DataModuleConfig,
        optimizer: dict[str, Any] | None,
        scheduler: dict[str, Any] | None,
        start: StartingPoint | None,
        self_energies: str,
    ) -> None:
        """Build the network for the training batches: statistics left to the data computed from them
        (or taken from the starting model), input widths read from them, starting weights loaded."""
        num_elements = (
            datamodule.num_elements or len(self.metadata.get("elements", [])) or getattr(train, "num_elements", 0)
        )
        fields = resolve(self.name).config.model_fields
        if start is not None:
            check_same_family(self.name, start)
            check_cut_off(start, datamodule.cut_off)
            self.config, _ = inherit_network(self.config, start.config, self.name)
        if "elements" in fields and self.config.get("elements") is None and self.metadata.get("elements"):
            self.config = {**self.config, "elements": list(self.metadata["elements"])}
        graph = selected_columns(datamodule).get(K.Y_GRAPH_SCALARS, [])
        energy_column = graph.index(self.config["energy_target"]) if self.config.get("energy_target") in graph else 0
        self.config = resolve_auto(self.config, train, fields, energy_column)  # type: ignore[arg-type]
        atom_width, graph_width, edge_width = attribute_widths(train)
        self.config = with_edge_width(self.name, self.config, edge_width)
        self.build(datamodule, num_elements, optimizer, scheduler, atom_width, graph_width)
        if start is None:
            return
        load_starting_weights(self.net, start, self.config)
        if not graph:
            return
        refit = refit_self_energies(self.net, train, self.metadata, start.metadata, energy_column)
        refitted = self_energies == "data" and other_self_energies(data_metadata, start.metadata)
        report = refit.report(refitted)
        self.metadata = {**self.metadata, FINE_TUNING: {"source": start.source, "self_energies": report}}
        if refitted:
            self.metadata["atomic_energies"] = refit.energies
            for batches in (train, validation):
                if batches is not None:
                    self.adapt_batches(batches, data_metadata)
        print(fine_tuning_line(report, refitted), flush=True)

    def start_from(self, base: TrainedModel, source: str = "the base model") -> Model:
        """Make the next :meth:`train` start from ``base``'s weights, element list and statistics.

        ``base`` must be of the same family (this model may add a modifier to it: an
        ``ssf_mace_model`` from a ``mace_model``); its network's hyperparameters replace this
        model's (:func:`~physicsml.finetune.inherit_network`), the losses stay this model's.
        """
        self.start = starting_point(base, source)
        return self

    def calculator(
        self,
        device: str = "cpu",
        dtype: str = "float32",
        skin: float = 0.5,
        compile: bool = False,  # noqa: A002 (torch's own word for it)
    ) -> PhysicsMLCalculator:
        """This model as an ASE calculator (:class:`physicsml.ase.PhysicsMLCalculator`)."""
        return PhysicsMLCalculator(self, device=device, dtype=dtype, skin=skin, compile=compile)
