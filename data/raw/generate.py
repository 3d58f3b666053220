"""Generate the default datasets shipped in ``data/raw`` (run once, by hand).

    pip install -e ".[generate]"
    python data/raw/generate.py

molecules.extxyz
    The closed-shell H/C/N/O molecules of ASE's G2 collection, each rattled into
    16 configurations (Gaussian displacements, fixed seed), labelled with
    GFN2-xTB energies and forces from tblite (eV, eV/Å). Open-shell molecules
    (radicals, triplets) and single atoms are left out: they would need a spin
    state choice that a default dataset should not make silently.

bulk.extxyz
    Periodic Cu, Al and Ni cells from ``ase.build``: a one-atom primitive fcc
    cell (smaller than twice any usual cut-off), conventional cubic cells,
    a 2x2x2 supercell, a sheared triclinic cell and a Cu3Al alloy; rattled and
    scaled, labelled with ASE's EMT energies, forces and stress (eV, eV/Å, eV/Å^3).
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.collections import g2

HERE = Path(__file__).parent
SEED = 20261123
ORGANIC = {"H", "C", "N", "O"}


def closed_shell_molecules() -> list:
    """G2 molecules of H, C, N, O with an even electron count and no magnetic moment."""
    chosen = []
    for atoms in g2:
        moments = atoms.get_initial_magnetic_moments() if atoms.has("initial_magmoms") else np.zeros(len(atoms))
        if (
            len(atoms) > 1
            and set(atoms.get_chemical_symbols()) <= ORGANIC
            and atoms.numbers.sum() % 2 == 0
            and np.abs(moments).sum() == 0
        ):
            chosen.append(atoms)
    return chosen


def labelled(atoms, calculator, properties):
    atoms.calc = calculator
    results = {name: getattr(atoms, f"get_{name}")() for name in properties}
    atoms.calc = SinglePointCalculator(
        atoms, **{k.replace("potential_energy", "energy"): v for k, v in results.items()}
    )
    return atoms


def molecules(rng: np.random.Generator, per_molecule: int = 16) -> list:
    from tblite.ase import TBLite

    frames = []
    for template in closed_shell_molecules():
        name = template.get_chemical_formula()
        for k in range(per_molecule):
            atoms = template.copy()
            atoms.positions += rng.normal(scale=0.02 + 0.04 * k / per_molecule, size=atoms.positions.shape)
            atoms.info = {"name": name, "config_type": "rattled"}
            calc = TBLite(method="GFN2-xTB", charge=0, multiplicity=1, verbosity=0)
            frames.append(labelled(atoms, calc, ["potential_energy", "forces"]))
    return frames


def bulk_cells(rng: np.random.Generator, per_cell: int = 20) -> list:
    shear = np.array([[1.0, 0.08, 0.05], [0.0, 0.97, 0.11], [0.0, 0.0, 1.04]])
    templates = {
        "Cu_primitive": bulk("Cu", "fcc", a=3.61),
        "Cu_cubic": bulk("Cu", "fcc", a=3.61, cubic=True),
        "Al_2x2x2": bulk("Al", "fcc", a=4.05) * (2, 2, 2),
        "Ni_cubic": bulk("Ni", "fcc", a=3.52, cubic=True),
        "Cu_triclinic": bulk("Cu", "fcc", a=3.61, cubic=True),
        "Cu3Al": bulk("Cu", "fcc", a=3.70, cubic=True),
    }
    templates["Cu_triclinic"].set_cell(templates["Cu_triclinic"].cell.array @ shear, scale_atoms=True)
    templates["Cu3Al"].numbers[0] = 13
    frames = []
    for name, template in templates.items():
        for k in range(per_cell):
            atoms = template.copy()
            atoms.set_cell(atoms.cell.array * rng.uniform(0.97, 1.03), scale_atoms=True)
            atoms.positions += rng.normal(scale=0.03 + 0.07 * k / per_cell, size=atoms.positions.shape)
            atoms.info = {"name": name, "config_type": "rattled"}
            frames.append(labelled(atoms, EMT(), ["potential_energy", "forces", "stress"]))
    return frames


def main() -> None:
    rng = np.random.default_rng(SEED)
    mols = molecules(rng)
    ase.io.write(HERE / "molecules.extxyz", mols, format="extxyz")
    cells = bulk_cells(rng)
    ase.io.write(HERE / "bulk.extxyz", cells, format="extxyz")
    print(f"molecules.extxyz: {len(mols)} structures; bulk.extxyz: {len(cells)} structures")


if __name__ == "__main__":
    main()
