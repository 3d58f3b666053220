"""The ``active`` section: rounds of active learning, each exploring with the last model, selecting
what it is least sure of, labelling that and training again."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from physicsml.configs.base import Config

#: A round's name: what DVC puts after ``@`` in its stages' names and ``active/<name>/`` in paths.
ROUND_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

#: The predecessor of a first round: the pipeline's own model (``models/``) and no labels yet.
START = "start"


class SelectConfig(Config):
    """``active.select``: which candidates a round labels."""

    method: Literal["max_std", "random", "farthest", "max_std_then_farthest"] = Field(
        "max_std_then_farthest",
        description="max_std: the most uncertain; random: the baseline; farthest: farthest-point sampling in the "
        "model's embedding space; max_std_then_farthest: the most uncertain top_fraction, then farthest-point "
        "among them (no fifty copies of one failure).",
    )
    count: int = Field(50, ge=1, description="Structures selected (and labelled) per round.")
    top_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="max_std_then_farthest: the share of candidates, most uncertain first, to pick from.",
    )
    min_distance: float = Field(
        0.0,
        ge=0,
        description="Skip candidates closer than this to a training structure in the model's embedding space "
        "(graph mean of its last block); 0: skip none.",
    )
    seed: int = Field(0, ge=0, description="random: the seed of the draw.")


class LabelConfig(Config):
    """``active.label``: the reference calculator."""

    calculator: str = Field(
        "tblite.ase.TBLite",
        description="Import path of an ASE calculator class: tblite.ase.TBLite (GFN2-xTB, as the default "
        "molecules were labelled; pip install -e '.[generate]'), ase.calculators.emt.EMT for the default metals.",
    )
    config: dict[str, Any] = Field(
        default_factory=lambda: {"method": "GFN2-xTB", "charge": 0, "multiplicity": 1, "verbosity": 0},
        description="Its keyword arguments (the default: the settings the default molecules were labelled with).",
    )


class ActiveConfig(Config):
    """``active``: active-learning rounds as cached DVC stages (``active_*@<round>``)."""

    rounds: dict[str, str] = Field(
        default_factory=dict,
        description="Each round and the round it follows (start: the pipeline's model), e.g. {round1: start, "
        "round2: round1}; add one with dvc exp run -S '+active.rounds.round3=round2'.",
    )
    start: Literal["train", "validation", "test"] | list[str] = Field(
        "train", description="Where exploration starts: a split, or a list of structure files."
    )
    structures: int = Field(8, ge=1, description="Start structures (the first of `start`), one trajectory each.")
    temperatures_K: list[float] = Field(
        default_factory=lambda: [300.0], min_length=1, description="Explore by MD at each of these temperatures."
    )
    steps: int = Field(400, ge=1, description="MD steps per trajectory; the integrator and checks are md's.")
    interval: int = Field(10, ge=1, description="A candidate frame every `interval` steps.")
    max_force_std: float | None = Field(
        None, gt=0, description="Stop a trajectory once a predicted force std exceeds this (eV/Å); null: never."
    )
    pool: str | None = Field(
        None, description="A file of unlabelled structures, candidates beside the explored frames."
    )
    select: SelectConfig = Field(default_factory=SelectConfig)
    label: LabelConfig | None = Field(
        default_factory=LabelConfig,
        description="The reference calculator; null: stop after selection and label "
        "active/<round>/selected.extxyz yourself (see the README).",
    )
    test_files: list[str] = Field(
        default_factory=list, description="Labelled files measured after every round, e.g. a high-temperature set."
    )

    @field_validator("rounds")
    @classmethod
    def _rounds_form_chains(cls, rounds: dict[str, str]) -> dict[str, str]:
        """Every round follows ``start`` or another round, none itself or a later one (no cycles)."""
        for name, after in rounds.items():
            if not ROUND_NAME.match(str(name)) or str(name) == START:
                raise ValueError(
                    f"round name {name!r}: letters, digits, _ and - only, starting with a letter, and not {START!r}"
                )
            if after != START and after not in rounds:
                raise ValueError(f"round {name!r} follows {after!r}, which is neither {START!r} nor a round")
        for name in rounds:
            seen, current = {name}, rounds[name]
            while current != START:
                if current in seen:
                    raise ValueError(f"rounds {sorted(seen)} follow each other in a cycle")
                seen.add(current)
                current = rounds[current]
        return rounds
