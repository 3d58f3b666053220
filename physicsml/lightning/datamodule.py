"""LightningDataModule over ready-made batches (any ``pre_batch`` mode)."""

from __future__ import annotations

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from physicsml.data.datasets import make_dataloader


class BatchesDataModule(pl.LightningDataModule):
    """Training batches in a per-epoch shuffled order, validation batches in file order.

    Under DDP, Lightning gives each process a distinct share of the batches.
    """

    def __init__(
        self, train: Dataset | None = None, validation: Dataset | None = None, num_workers: int | str = 0, seed: int = 0
    ) -> None:
        super().__init__()
        self.train, self.validation = train, validation
        self.num_workers, self.seed = num_workers, seed

    def train_dataloader(self) -> DataLoader:
        assert self.train is not None
        return make_dataloader(self.train, shuffle=True, seed=self.seed, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        return (
            []
            if self.validation is None
            else make_dataloader(self.validation, shuffle=False, num_workers=self.num_workers)
        )
