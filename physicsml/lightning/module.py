"""The LightningModule shared by every model family, for training only.

It wraps a family's network (built from :func:`physicsml.models.network.blueprint`,
as a saved model is rebuilt without it) and adds, once for all families: the weighted sum
of per-target losses on the network's predictions with their derivatives
(:mod:`physicsml.models.derivatives`), per-target MAE and RMSE every epoch, the
variant's training behaviour (mean-only epochs) and the optimizer and scheduler built from config.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torchmetrics
from torch_geometric.data import Batch

from physicsml.configs import OptimizerConfig, SchedulerConfig, parse_config
from physicsml.data import keys as K
from physicsml.data.batch import batch_as_dict
from physicsml.models.base import ModelConfig
from physicsml.models.compiled import CompiledTraining
from physicsml.models.derivatives import member_predictions, with_derivatives
from physicsml.models.ensemble import Ensemble, combine
from physicsml.models.network import Network, blueprint
from physicsml.targets import TARGET_KINDS, compared_whole, mask_key, selected_columns


class PhysicsMLModule(pl.LightningModule):
    """A model family's network trained on the batches of :mod:`physicsml.data`.

    Args:
        model_name: registered family name (``egnn_model``, ...).
        model_config: the family's config dict.
        datamodule_config: the datamodule config dict (target selections, cut-off).
        optimizer: optimizer config dict (``name``, ``config``).
        scheduler: scheduler config dict, or ``None``.
        num_elements: width of the one-hot element encoding of the batches.
        num_atom_features: width of their ``atom_features`` (0: none).
        num_graph_attrs: width of their ``graph_attrs`` (0: the model reads none).
        net: a network built from these (a loaded model's) to train instead of a fresh one.
    """

    def __init__(
        self,
        model_name: str,
        model_config: dict[str, Any],
        datamodule_config: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        num_elements: int = 0,
        num_atom_features: int = 0,
        num_graph_attrs: int = 0,
        net: Network | Ensemble | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        plan = blueprint(self.hparams)
        self.spec = plan.spec
        self.config: ModelConfig = plan.config
        self.datamodule_config = plan.datamodule
        self.optimizer_config = parse_config(OptimizerConfig, optimizer or {}, "config", "optimizer")
        self.scheduler_config = parse_config(SchedulerConfig, scheduler, "config", "scheduler") if scheduler else None
        self.columns = selected_columns(self.datamodule_config)
        self.outputs = plan.outputs
        self.plan = plan
        self.net = plan.build() if net is None else net
        self.loss_configs = self.config.loss_configs()
        self.losses = torch.nn.ModuleDict({key: config.build() for key, config in self.loss_configs.items()})
        if not self.losses:
            raise ValueError("no loss configured: set at least one y_*_loss_config in the model config")
        for key, loss_config in self.loss_configs.items():
            if loss_config.per_atom and key != K.Y_GRAPH_SCALARS:
                raise ValueError(f"{key}_loss_config: per_atom (and WeightedMSELoss) is for y_graph_scalars only")
        self.compile_training = False  # train.compile: set by Model.train
        self._compiled: CompiledTraining | None = None
        self.metrics = torch.nn.ModuleDict()
        for stage in ("train", "val"):
            for names in self.columns.values():
                for name in names:
                    self.metrics[f"{stage}__{name}__mae"] = torchmetrics.MeanAbsoluteError()
                    self.metrics[f"{stage}__{name}__rmse"] = torchmetrics.MeanSquaredError(squared=False)

    @property
    def energy_name(self) -> str | None:
        """The column name of the energy (``None`` when no graph scalar is predicted)."""
        index = self.outputs.energy
        return self.outputs.graph_scalars[index] if index is not None else None

    # ---- physics -----------------------------------------------------------------

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Predictions for a batch dict, with forces and stress when configured."""
        return with_derivatives(
            self.net, data, self.config.compute_forces, self.config.compute_stress, create_graph=self.training
        )

    # ---- training ----------------------------------------------------------------

    def _pairs(
        self, out: dict[str, torch.Tensor], data: dict[str, torch.Tensor]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Target key -> (prediction, reference) for every target present in both."""
        pairs = {}
        for key in self.columns:
            predicted = out.get(TARGET_KINDS[key].output)
            if predicted is not None and key in data:
                pairs[key] = (predicted, data[key])
        return pairs

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        data = batch_as_dict(batch)
        variances = getattr(getattr(self.net, "heads", None), "variances", None)
        if variances is not None:
            variances.detach = self.mean_only
        members = self._member_predictions(data)
        out = combine(members)
        pairs = self._pairs(out, data)
        num_graphs = int(data[K.NUM_GRAPHS])
        total = torch.zeros((), dtype=data[K.COORDINATES].dtype, device=self.device)
        for key, loss in self.losses.items():
            if key not in pairs:
                raise KeyError(
                    f"a loss is configured for {key} but the batches carry no {key}: select it in the datamodule config"
                )
            # an ensemble trained together (ensemble_ani_model): each member on its own loss, so they stay apart
            value = torch.stack([self._loss(key, loss, member, data) for member in members]).mean()
            total = total + self.loss_configs[key].weight * value
            self.log(f"{stage}/{key}/loss", value, on_step=False, on_epoch=True, batch_size=num_graphs, sync_dist=True)
        self.log(
            f"{stage}/total/loss",
            total,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=num_graphs,
            sync_dist=True,
        )
        for key, (predicted, reference) in pairs.items():
            names = self.columns[key]
            mask = data.get(mask_key(key))
            for column, name in enumerate(names):
                whole = compared_whole(key)
                p = predicted.detach() if whole else predicted.detach()[:, column]
                r = reference if whole else reference[:, column]
                if mask is not None:
                    known = mask[:, column] > 0
                    p, r = p[known], r[known]
                    if not len(r):
                        continue
                for kind in ("mae", "rmse"):
                    metric: Any = self.metrics[f"{stage}__{name}__{kind}"]
                    metric(p.reshape(-1), r.reshape(-1))
                    self.log(f"{stage}/{name}/{kind}", metric, on_step=False, on_epoch=True, batch_size=num_graphs)
        return total

    def _member_predictions(self, data: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Each member's predictions with forces and stress; a training step through
        :class:`~physicsml.models.compiled.CompiledTraining` when ``compile_training`` is set."""
        forces, stress = self.config.compute_forces, self.config.compute_stress
        if not (self.training and self.compile_training):
            return member_predictions(self.net, data, forces, stress, create_graph=self.training)
        if self._compiled is None or self._compiled.net is not self.net:
            self._compiled = CompiledTraining(self.net)
        return self._compiled(data, forces, stress)

    @property
    def mean_only(self) -> bool:
        """Whether a mean-variance model is in its first ``mean_only_epochs``: the configured losses train
        the mean, and the variance heads learn the spread of its errors without acting on it."""
        return self.spec.variant.mean_only(self.config, self.current_epoch)

    def _loss(
        self, key: str, loss: torch.nn.Module, out: dict[str, torch.Tensor], data: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Mean of the element-wise loss over the known labels, each weighted by its structure's loss weight.

        With no missing labels and no weights this is the loss class's own mean. A target
        with a predicted variance ``s^2`` is trained, once :attr:`trains_variance`, with the
        Gaussian negative log-likelihood ``(log s^2 + (y - p)^2 / s^2) / 2`` instead, or during
        :attr:`mean_only` epochs the configured loss plus that likelihood of the detached mean.
        """
        config = self.loss_configs[key]
        kind = TARGET_KINDS[key]
        predicted, reference = out[kind.output], data[key]
        variance = out.get(K.variance(kind.output))
        if config.per_atom:
            atoms = (data[K.PTR][1:] - data[K.PTR][:-1]).to(predicted.dtype)[:, None]
            predicted, reference = predicted / atoms, reference / atoms
            variance = variance / atoms**2 if variance is not None else None
        if variance is None:
            elementwise = loss(predicted, reference)
        elif self.mean_only:
            nll = 0.5 * (torch.log(variance) + (predicted.detach() - reference) ** 2 / variance)
            elementwise = loss(predicted, reference) + nll
        else:
            elementwise = 0.5 * (torch.log(variance) + (predicted - reference) ** 2 / variance)
        rows = elementwise.shape[0]
        weight = torch.ones(rows, dtype=elementwise.dtype, device=elementwise.device)
        if K.LOSS_WEIGHT in data:
            per_graph = data[K.LOSS_WEIGHT].to(elementwise.dtype)
            if kind.level == "graph":
                weight = per_graph
            elif kind.level == "node":
                weight = per_graph[data[K.BATCH]]
            else:  # an edge's structure is its receiver's
                weight = per_graph[data[K.BATCH][data[K.EDGE_INDEX][0]]]
        weight = weight.view(rows, *[1] * (elementwise.dim() - 1)).expand_as(elementwise)
        known = torch.ones_like(elementwise)
        if mask_key(key) in data:
            mask = data[mask_key(key)].to(elementwise.dtype)  # [rows, n_columns]
            known = (mask if not compared_whole(key) else mask.view(rows, *[1] * (elementwise.dim() - 1))).expand_as(
                elementwise
            )
        count = known.sum()
        return (elementwise * weight * known).sum() / count.clamp_min(1.0)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        trainable = [parameter for parameter in self.parameters() if parameter.requires_grad]
        optimizer = getattr(torch.optim, self.optimizer_config.name)(trainable, **self.optimizer_config.config)
        if self.scheduler_config is None:
            return optimizer
        config = self.scheduler_config
        scheduler = getattr(torch.optim.lr_scheduler, config.name)(optimizer, **config.config)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": config.interval,
                "frequency": config.frequency,
                "monitor": config.monitor,
                "strict": config.strict,
            },
        }
