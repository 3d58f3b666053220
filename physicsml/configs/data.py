"""The sections of the data stages: ``data`` (where the structures are), ``featurise``
(elements, self-energies, split) and ``datamodule`` (graphs and batches), with their parts.

The data stages read them (training reads ``datamodule`` too); none needs torch or
Lightning to validate.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import Field

from physicsml.configs.base import Config, with_fields
from physicsml.targets import TARGET_KINDS, field_type


class WeightsConfig(Config):
    """``data.weights``: each structure's weight in every loss, from a key of its ``info``
    (as mace's ``config_type_weights``)."""

    key: str = Field(..., description="Info key holding the weight, or a category mapped by `values`.")
    values: dict[str, float] | None = Field(
        None, description="Category -> weight (e.g. {bulk: 1.0, surface: 3.0}); null: the info value is the weight."
    )
    default: float = Field(1.0, ge=0, description="Weight of a record without the key (or of an unmapped category).")


class LabelsConfig(Config):
    """``data.labels``: labels kept in a table beside the structures (QM9's ``gdb9.sdf.csv``)."""

    path: str = Field(..., description="A CSV or Parquet file with one row per structure.")
    id_column: str = Field(..., description="Its column holding each structure's id.")
    match: str = Field(
        "name",
        description="What the id matches: 'position' (the record's 0-based index in its file) or an info key "
        "of the record ('name': the SDF title or an extxyz name=...).",
    )


class DataConfig(Config):
    """``data``: where the raw structures are and which of their keys are targets."""

    source: str | list[str] | None = Field(
        None, description="One file (or list of files) to split into train/validation/test."
    )
    train: str | list[str] | None = Field(None, description="Training file(s), when the split is given as files.")
    validation: str | list[str] | None = Field(None, description="Validation file(s), with `train`.")
    test: str | list[str] | None = Field(None, description="Test file(s), with `train`.")
    format: str | None = Field(
        None,
        description="'sdf', 'hdf5' (ANI-1x, ANI-1, SPICE), 'parquet', 'arrow' or an ASE format name; null guesses "
        "from the suffix.",
    )
    targets: dict[str, str] = Field(
        default_factory=dict, description="Target column name -> key in the file (calculator result, info or arrays)."
    )
    allow_missing: list[str] = Field(
        default_factory=list,
        description="Targets that may be absent or NaN in some records (or atoms); those records (atoms) are "
        "left out of that target's loss and metrics, e.g. [stress] for molecules beside periodic cells.",
    )
    weights: WeightsConfig | None = Field(None, description="Per-structure loss weights from an info key.")
    labels: LabelsConfig | None = Field(
        None, description="A table of labels joined to the structures by id; data.targets may name its columns."
    )
    units: dict[str, float] = Field(
        default_factory=dict,
        description="Target -> factor its values are multiplied by when read (27.211386245988: Hartree to eV).",
    )
    edge_targets: dict[str, Literal["scalar", "vector"]] = Field(
        default_factory=dict,
        description="Targets that are labels of atom pairs, and their kind: a flat list 'i j value ...' (scalar) "
        "or 'i j x y z ...' (vector) per structure, in an extxyz info key or an SD property; 0-based atom indices.",
    )
    bonds: Literal["none", "file", "perceive"] = Field(
        "none",
        description="Where the bonds behind atom and bond features come from: none; file (an SDF/MOL file's "
        "bonds); perceive (RDKit's rdDetermineBonds from the coordinates and the total charge).",
    )
    total_charge: str | None = Field(
        None,
        description="Key (extxyz info, SD property) of each structure's total charge, used to perceive bonds; "
        "null: every structure is neutral.",
    )
    on_error: Literal["fail", "skip"] = Field(
        "fail",
        description="A record that fails a check of its own (bonds not perceived, an element outside "
        "featurise.elements, non-finite coordinates, a missing label, ...): fail stops at the first with its "
        "error; skip leaves it out, counts it per reason in the featurised metadata and lists it in "
        "skipped.csv beside the featurised files. Problems of a whole file are errors either way.",
    )

    @pydantic.model_validator(mode="after")
    def _one_layout(self) -> DataConfig:
        if (self.source is None) == (self.train is None):
            raise ValueError("give either `source` (one dataset to split) or `train` (with `validation`/`test`)")
        for key in ("allow_missing", "edge_targets", "units"):
            unknown = [name for name in getattr(self, key) if name not in self.targets]
            if unknown:
                raise ValueError(f"{key} names {unknown}, which are not among the targets {list(self.targets)}")
        return self


class AtomicEnergiesConfig(Config):
    """``featurise.atomic_energies``: the per-element self-energies behind ``total_atomic_energy``."""

    method: Literal["none", "given", "isolated", "least_squares"] = Field(
        "least_squares",
        description="none: zeros; given: `values`; isolated: single-atom records; "
        "least_squares: fit sum of per-element energies to `target` on the training split.",
    )
    target: str = Field("energy", description="The energy target the self-energies refer to.")
    values: dict[str, float | dict[int, float]] | None = Field(
        None,
        description="Element symbol -> energy, for method 'given'; with by_formal_charge an element may map "
        "formal charges to energies ({O: {0: -2040.1, -1: -2042.9}}).",
    )
    by_formal_charge: bool = Field(
        False,
        description="One self-energy per element and formal charge ({Z: {charge: E}}), given or fitted by "
        "least squares; the formal charges come from the bonds (data.bonds).",
    )
    file: str | None = Field(
        None, description="File of isolated-atom records for method 'isolated' (default: the source files)."
    )

    @pydantic.model_validator(mode="after")
    def _values_for_given(self) -> AtomicEnergiesConfig:
        if self.method == "given" and not self.values:
            raise ValueError("method 'given' needs `values` (element symbol -> energy)")
        if self.by_formal_charge and self.method not in ("given", "least_squares"):
            raise ValueError("by_formal_charge needs method 'given' or 'least_squares'")
        nested = [symbol for symbol, value in (self.values or {}).items() if isinstance(value, dict)]
        if nested and not self.by_formal_charge:
            raise ValueError(f"values per formal charge (for {nested}) need by_formal_charge: true")
        return self


class SplitConfig(Config):
    """``featurise.split``: how one source becomes train/validation/test."""

    method: Literal["random", "files"] = Field(
        "random", description="random: shuffle `source` with `seed` and cut at `fractions`; files: use data.train/..."
    )
    fractions: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train, validation, test fractions.")
    seed: int = Field(0, description="Seed of the random split.")

    @pydantic.field_validator("fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) < 0 or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"fractions must be non-negative and sum to 1, got {list(value)}")
        return value


class FeaturiseConfig(Config):
    """``featurise``: element list, self-energies and split."""

    elements: Literal["auto"] | list[str | int] = Field(
        "auto", description="Element symbols (or Z) in index order; 'auto' takes the sorted elements present."
    )
    atomic_energies: AtomicEnergiesConfig = Field(default_factory=AtomicEnergiesConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    atom_features: list[str] = Field(
        default_factory=list,
        description="RDKit features of each atom appended to its element one-hot (atomic_num, formal_charge, "
        "degree, hybridisation, stereo, is_in_ring, is_aromatic, is_chiral); needs data.bonds.",
    )
    bond_features: list[str] = Field(
        default_factory=list,
        description="RDKit features of each bond, the edge attributes of bonded neighbour pairs (order, stereo, "
        "is_in_ring, is_chiral, is_rotatable, is_conjugated); needs data.bonds.",
    )
    one_hot: bool = Field(True, description="One-hot encode categorical atom and bond features (else their index).")


class BatchSizeConfig(Config):
    batch_size: int = Field(32, ge=1, description="Structures per batch.")


def _batches_of(size: int) -> Any:
    """A default factory of a :class:`BatchSizeConfig` of ``size`` structures."""
    return lambda: BatchSizeConfig(batch_size=size)


def _target_fields() -> dict[str, Any]:
    """One ``datamodule`` key per target kind selecting its columns (:data:`physicsml.targets.TARGET_KINDS`)."""
    return {kind.key: (field_type(kind), Field(None, description=kind.description)) for kind in TARGET_KINDS.values()}


@with_fields(_target_fields())
class DataModuleConfig(Config):
    """``datamodule``: graphs and batches (the reference's datamodule config); with one key per target
    kind (``y_graph_scalars``, ``y_node_vector``, ...: :mod:`physicsml.targets`) naming its columns."""

    train: BatchSizeConfig = Field(default_factory=_batches_of(32))
    validation: BatchSizeConfig = Field(default_factory=_batches_of(64))  # no gradients kept: larger batches fit
    predict: BatchSizeConfig = Field(default_factory=_batches_of(64))
    num_workers: pydantic.NonNegativeInt | Literal["all"] = Field(
        0, description="DataLoader workers; 'all' uses every CPU."
    )
    num_elements: int = Field(
        0, ge=0, description="Width of the one-hot encoding; 0 takes the featurised element list."
    )
    node_attrs_cols: list[str] | None = Field(
        None,
        description="Per-atom columns (e.g. partial charges from an extxyz array named in data.targets) appended "
        "to every atom's node attributes.",
    )
    graph_attrs_cols: list[str] | None = Field(
        None,
        description="Per-structure columns (e.g. a total charge) concatenated into graph_attrs, which every "
        "family reads beside the element of each atom.",
    )
    cut_off: float = Field(
        5.2, gt=0, description="Neighbour cut-off radius in Å; 5.2 covers every family, ANI's radial cut-off included."
    )
    pbc: tuple[bool, bool, bool] | None = Field(None, description="Overrides every structure's pbc when set.")
    cell: list[list[float]] | None = Field(None, description="Overrides every structure's cell (3x3) when set.")
    self_interaction: bool = Field(
        False, description="Add one edge from each atom to itself (no family can use it: they divide by edge lengths)."
    )
    pre_batch: Literal["on_disk", "in_memory"] | None = Field(
        "on_disk",
        description="on_disk: memory-mapped batches; in_memory: collated once in RAM; null: collated per step.",
    )

    @pydantic.field_validator("cell")
    @classmethod
    def _cell(cls, value: list[list[float]] | None) -> list[list[float]] | None:
        if value is not None and (len(value) != 3 or any(len(row) != 3 for row in value)):
            raise ValueError("cell must be 3x3")
        return value

    @pydantic.field_validator("self_interaction")
    @classmethod
    def _no_self_edges(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "true adds edges of length 0, and every model family divides by the edge length (unit vectors, "
                "1/r terms), so energies and forces would be NaN: leave it false"
            )
        return value
