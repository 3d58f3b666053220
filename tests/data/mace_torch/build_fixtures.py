"""Build the mace-torch fixtures of ``tests/unit/test_convert_mace.py``: small random models and their predictions.

Runs in a mace-torch 0.3.16 virtual environment (never the project's: mace-torch pins e3nn 0.4.4)::

    python -m venv /tmp/mace && /tmp/mace/bin/pip install torch==2.13.0 mace-torch==0.3.16
    /tmp/mace/bin/python tests/data/mace_torch/build_fixtures.py [--shared ../shared/data] [--out DIR]

For every option combination of :data:`MODELS` it builds a ``MACE`` / ``ScaleShiftMACE`` with
random weights (four elements, 8-16 channels, float64 unless named ``_float32``), saves it the way
``mace_run_train`` and the published foundation models are saved (``torch.save`` of the module,
gzipped here: the symmetric contractions' ``U`` buffers are mostly zeros), and evaluates it with
mace-torch's own ``MACECalculator`` on the structures of :func:`structures`: a molecule of
rMD17 ethanol, the same molecule in a small periodic box (neighbours through the faces), a
periodic silicon cell of mlearn and the molecule squeezed to 0.8 of its size (where ZBL acts). ``references.pt`` holds the structures and, per model and head,
energy, forces, stress (periodic ones) and per-atom energies: plain tensors, read with
``weights_only=True``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # e3nn 0.4.4 loads its constants unsafely

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from e3nn import o3  # noqa: E402
from mace import modules  # noqa: E402
from mace.calculators import MACECalculator  # noqa: E402

ELEMENTS = [1, 6, 8, 14]

#: name -> (model class, keyword arguments beyond the shared ones, heads)
MODELS: dict[str, dict] = {
    # MACE-MP-0-like: residual first interaction, scale/shift, max_ell 3, vectors in the hidden features
    "mp_residual": dict(hidden="8x0e + 8x1o", max_ell=3, correlation=2, first="RealAgnosticResidualInteractionBlock"),
    # MACE-OFF-like: scalars only, correlation 3, non-linear readout
    "off_scalars": dict(hidden="12x0e", max_ell=3, correlation=3, first="RealAgnosticResidualInteractionBlock"),
    # the older non-residual first interaction, 2e hidden channels, other radial sizes
    "l2_agnostic_first": dict(
        hidden="8x0e + 8x1o + 8x2e",
        max_ell=2,
        correlation=3,
        first="RealAgnosticInteractionBlock",
        num_bessel=6,
        num_polynomial_cutoff=6,
        radial_MLP=[12, 16],
    ),
    # MACE-MPA/OMAT-like: density-normalised interactions, ZBL pair repulsion, Agnesi distance transform
    "density_zbl_agnesi": dict(
        hidden="8x0e + 8x1o",
        max_ell=2,
        correlation=3,
        first="RealAgnosticDensityInteractionBlock",
        rest="RealAgnosticDensityResidualInteractionBlock",
        pair_repulsion=True,
        distance_transform="Agnesi",
        r_max=4.5,
    ),
    # a multi-head model (as mace_run_train's multi-head fine-tuning writes): three interactions
    "multihead": dict(
        hidden="8x0e + 8x1o",
        max_ell=2,
        correlation=2,
        first="RealAgnosticResidualInteractionBlock",
        heads=["pt_head", "Default"],
        num_interactions=3,
    ),
    # plain MACE (no scale/shift): the pair repulsion is added unscaled
    "plain_zbl": dict(
        hidden="8x0e + 8x1o",
        max_ell=1,
        correlation=2,
        first="RealAgnosticResidualInteractionBlock",
        plain=True,
        pair_repulsion=True,
    ),
    # the MP-0-like model in float32
    "mp_residual_float32": dict(
        hidden="8x0e + 8x1o", max_ell=3, correlation=2, first="RealAgnosticResidualInteractionBlock", float32=True
    ),
}


def build(name: str, spec: dict) -> torch.nn.Module:
    """A random model of ``spec``, in float64 (or float32), seeded by its name."""
    dtype = torch.float32 if spec.get("float32") else torch.float64
    torch.set_default_dtype(dtype)
    torch.manual_seed(sum(map(ord, name)))
    heads = spec.get("heads", ["Default"])
    rng = np.random.default_rng(sum(map(ord, name)))
    energies = rng.uniform(-5.0, -0.5, size=(len(heads), len(ELEMENTS)))
    kwargs = dict(
        r_max=spec.get("r_max", 5.0),
        num_bessel=spec.get("num_bessel", 8),
        num_polynomial_cutoff=spec.get("num_polynomial_cutoff", 5),
        max_ell=spec["max_ell"],
        interaction_cls=modules.interaction_classes[spec.get("rest", "RealAgnosticResidualInteractionBlock")],
        interaction_cls_first=modules.interaction_classes[spec["first"]],
        num_interactions=spec.get("num_interactions", 2),
        num_elements=len(ELEMENTS),
        hidden_irreps=o3.Irreps(spec["hidden"]),
        MLP_irreps=o3.Irreps("8x0e"),
        atomic_energies=energies if len(heads) > 1 else energies[0],
        avg_num_neighbors=7.5,
        atomic_numbers=ELEMENTS,
        correlation=spec["correlation"],
        gate=torch.nn.functional.silu,
        pair_repulsion=spec.get("pair_repulsion", False),
        distance_transform=spec.get("distance_transform", "None"),
        radial_MLP=spec.get("radial_MLP", [16, 16, 16]),
        heads=heads,
    )
    if spec.get("plain"):
        model = modules.MACE(**kwargs)
    else:
        scale = [1.3, 0.7][: len(heads)] if len(heads) > 1 else 1.3
        shift = [0.2, -0.1][: len(heads)] if len(heads) > 1 else 0.2
        model = modules.ScaleShiftMACE(atomic_inter_scale=scale, atomic_inter_shift=shift, **kwargs)
    return model.to(dtype).eval()


def structures(shared: Path) -> list:
    """The molecule, the molecule in a periodic box, and a periodic silicon cell."""
    ethanol = ase.io.read(shared / "rmd17_ethanol_botnet_test.xyz", index=0)
    ethanol.info, ethanol.arrays = {}, {k: ethanol.arrays[k] for k in ("numbers", "positions")}
    ethanol.pbc, ethanol.cell = False, None
    boxed = ethanol.copy()
    boxed.positions -= boxed.positions.min(0)
    boxed.set_cell(np.diag([5.5, 5.0, 4.8]) + np.array([[0.0, 0.3, 0.0], [0.0, 0.0, 0.0], [0.2, 0.0, 0.0]]))
    boxed.pbc = True
    silicon = ase.io.read(shared / "mlearn_Si_training.extxyz", index=0)
    silicon.info, silicon.arrays = {}, {k: silicon.arrays[k] for k in ("numbers", "positions")}
    silicon.rattle(0.05, seed=1)
    squeezed = ethanol.copy()  # bonds shorter than the covalent radii' sum: the ZBL repulsion is felt
    squeezed.positions *= 0.8
    return [ethanol, boxed, silicon, squeezed]


def evaluate(path: Path, dtype: str, head: str, atoms_list: list) -> list[dict[str, torch.Tensor]]:
    calculator = MACECalculator(model_paths=str(path), device="cpu", default_dtype=dtype, head=head)
    out = []
    for atoms in atoms_list:
        atoms = atoms.copy()
        atoms.calc = calculator
        row = {
            "energy": torch.tensor(atoms.get_potential_energy(), dtype=torch.float64),
            "forces": torch.tensor(atoms.get_forces(), dtype=torch.float64),
            "energies": torch.tensor(calculator.results["energies"], dtype=torch.float64),
        }
        if atoms.pbc.all():
            row["stress"] = torch.tensor(atoms.get_stress(voigt=False), dtype=torch.float64)
        out.append(row)
    return out


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=here.parents[2].parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=here)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    atoms_list = structures(args.shared)
    references: dict = {
        "structures": [
            {
                "numbers": torch.tensor(a.numbers),
                "positions": torch.tensor(a.positions),
                "cell": torch.tensor(np.asarray(a.cell)),
                "pbc": torch.tensor(a.pbc),
            }
            for a in atoms_list
        ],
        "models": {},
    }
    for name, spec in MODELS.items():
        model = build(name, spec)
        buffer = io.BytesIO()
        torch.save(model, buffer)
        raw = args.out / f".{name}.model"
        raw.write_bytes(buffer.getvalue())
        dtype = "float32" if spec.get("float32") else "float64"
        heads = spec.get("heads", ["Default"])
        references["models"][name] = {
            "dtype": dtype,
            "heads": {head: evaluate(raw, dtype, head, atoms_list) for head in heads},
        }
        raw.unlink()
        with gzip.open(args.out / f"{name}.model.gz", "wb", compresslevel=9) as handle:
            handle.write(buffer.getvalue())
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, {len(buffer.getvalue())} bytes")
    torch.save(references, args.out / "references.pt")


if __name__ == "__main__":
    main()
