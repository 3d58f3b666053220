"""Raw structures to featurised Arrow tables, one per split.

>>> from physicsml.configs import DataConfig, FeaturiseConfig
>>> data = DataConfig(source="data/raw/molecules.extxyz", targets={"energy": "energy", "forces": "forces"})
>>> config = FeaturiseConfig(atomic_energies={"method": "least_squares"})
>>> featurise_to("data/featurised", data, config)  # streamed, in every core
>>> tables = featurise(data, config)  # or in memory

The modules, each importing only those below it (this package only gathers their public names):

* :mod:`~physicsml.featurise.stage`: :func:`featurise_to` and :func:`featurise`, the stage itself;
* :mod:`~physicsml.featurise.stream`, :mod:`~physicsml.featurise.read_pass`,
  :mod:`~physicsml.featurise.fit_pass`, :mod:`~physicsml.featurise.write_pass`: its three passes in
  bounded memory;
* :mod:`~physicsml.featurise.predict`: :func:`featurise_like`, the same featurisation at prediction time;
* :mod:`~physicsml.featurise.chemistry`: RDKit bonds, atom and bond features;
* :mod:`~physicsml.featurise.atomic_energies`: the self-energies;
* :mod:`~physicsml.featurise.table`, :mod:`~physicsml.featurise.elements`,
  :mod:`~physicsml.featurise.columns`: the table's columns, the element list, the splits, units and
  loss weights.
"""

from __future__ import annotations

from physicsml.featurise import atomic_energies, stream
from physicsml.featurise.chemistry import Chemistry, chemistry_columns, chemistry_settings, molecule_of
from physicsml.featurise.columns import SPLITS, apply_units, loss_weight, loss_weights, random_split
from physicsml.featurise.predict import featurise_like
from physicsml.featurise.stage import (
    SKIPPED_CSV,
    Featurised,
    featurise,
    featurise_to,
    skip_counts,
    write_featurised,
    write_skipped,
)

__all__ = [
    "SKIPPED_CSV",
    "SPLITS",
    "Chemistry",
    "Featurised",
    "apply_units",
    "atomic_energies",
    "chemistry_columns",
    "chemistry_settings",
    "featurise",
    "featurise_like",
    "featurise_to",
    "loss_weight",
    "loss_weights",
    "molecule_of",
    "random_split",
    "skip_counts",
    "stream",
    "write_featurised",
    "write_skipped",
]
