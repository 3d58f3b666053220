"""nequip's models for ``md_speed.py``, built inside nequip's own venv: the eager ``NequIPGNNModel`` and its
AOTInductor twin.

``nequip-compile`` reads only a checkpoint or a package (and ``nequip-package`` reads a checkpoint), and a
checkpoint comes from ``nequip-train``. So the twin is the same model config (``model_config``: ``HYPER`` of
``equivariant_rmd17.py``, seed 0, float32) put through ``nequip-train`` for one step of Adam at learning rate 0
on one frame (the starting structure with zero energy and forces): the weights stay as initialised, the same
as the eager row's. Then

    nequip-compile model.ckpt model.nequip.pt2 --mode aotinductor --device cpu --target ase

(AOTInductor on CPU: a C++ build of the exported graph, with dynamic atom and edge counts, for one frame)
and ``NequIPCalculator.from_compiled_model``. The times of the three stages are kept apart from the MD.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from equivariant_rmd17 import HYPER


def type_names(atoms) -> list[str]:
    """The model's types: the elements of ``atoms`` by atomic number (H C O for the molecule, Cu for the box)."""
    from ase.data import atomic_numbers

    return sorted(set(atoms.get_chemical_symbols()), key=atomic_numbers.get)


def model_config(types: list[str], cut_off: float) -> dict:
    """``NequIPGNNModel``'s arguments at ``HYPER["nequip"]``, radial MLP [64, 64] as in ``equivariant_rmd17.py``."""
    h = HYPER["nequip"]
    return {
        **{k: h[k] for k in ("parity", "num_layers", "num_features")},
        "l_max": h["max_ell"],
        "num_bessels": h["num_bessel"],
        "polynomial_cutoff_p": h["num_polynomial_cutoff"],
        "seed": 0,
        "model_dtype": "float32",
        "type_names": types,
        "r_max": cut_off,
        "avg_num_neighbors": 10.0,
        "radial_mlp_depth": 2,
        "radial_mlp_width": 64,
    }


def eager_calculator(atoms, cut_off: float):
    """``NequIPCalculator`` on the untrained model with the transforms ``_from_saved_model`` would add."""
    from nequip.integrations.ase import NequIPCalculator
    from nequip.integrations.utils import basic_transforms
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state

    set_global_state()  # as NequIPCalculator._from_saved_model does
    types = type_names(atoms)
    model = NequIPGNNModel(**model_config(types, cut_off)).eval()
    transforms = basic_transforms(model.metadata, cut_off, types, {t: t for t in types})
    return NequIPCalculator(model, device="cpu", transforms=transforms)


def train_config(types: list[str], cut_off: float, directory: Path) -> dict:
    """A ``nequip-train`` config (JSON is YAML): one epoch of one frame, Adam at lr 0, checkpoint ``model.ckpt``."""
    frame = str(directory / "frame.xyz")
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": 1}
    mapper = "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper"
    checkpoint = {"dirpath": str(directory), "filename": "model", "enable_version_counter": False}
    return {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": 0,
            "train_file_path": frame,
            "val_file_path": frame,
            "key_mapping": {"REF_energy": "total_energy", "REF_forces": "forces"},
            "transforms": [  # a molecule gets a padded box: nequip-compile's check compares stresses, 0/0 without
                {"_target_": "nequip.data.transforms.NonPeriodicCellTransform", "override_cell": True},
                {
                    "_target_": mapper,
                    "model_type_names": types,
                    "chemical_species_to_atom_type_map": {t: t for t in types},
                },
                {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": cut_off},
            ],
            "train_dataloader": loader,
            "val_dataloader": loader,
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "max_epochs": 1,
            "accelerator": "cpu",
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": [{"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", **checkpoint}],
        },
        "training_module": {
            "_target_": "nequip.train.NequIPLightningModule",
            "loss": {
                "_target_": "nequip.train.EnergyForceLoss",
                "per_atom_energy": False,
                "coeffs": {"total_energy": 1.0, "forces": 1.0},
            },
            "val_metrics": {
                "_target_": "nequip.train.EnergyForceMetrics",
                "coeffs": {"total_energy_mae": 1.0, "forces_mae": 1.0},
            },
            "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.0},
            "model": {"_target_": "nequip.model.NequIPGNNModel", **model_config(types, cut_off)},
        },
    }


def run_tool(command: list[str], cwd: Path) -> float:
    """Runs one of nequip's commands; its wall time, or a ``RuntimeError`` with the last line it printed."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        lines = (result.stderr or result.stdout).strip().splitlines() or [f"exit status {result.returncode}"]
        raise RuntimeError(f"{Path(command[0]).name} failed: {lines[-1][:160]}")  # the start of the reason
    return time.perf_counter() - start


def compiled_calculator(atoms, cut_off: float, directory: Path):
    """``NequIPCalculator.from_compiled_model`` on the AOTInductor twin, and the seconds of each stage."""
    import ase.io
    from nequip.integrations.ase import NequIPCalculator

    directory.mkdir(parents=True, exist_ok=True)
    frame = atoms.copy()
    frame.info = {"REF_energy": 0.0}
    frame.arrays["REF_forces"] = np.zeros((len(atoms), 3))
    ase.io.write(directory / "frame.xyz", frame, format="extxyz")
    (directory / "config.yaml").write_text(json.dumps(train_config(type_names(atoms), cut_off, directory), indent=1))
    tools = Path(sys.executable).parent
    train = [f"{tools}/nequip-train", "-cp", str(directory), "-cn", "config", f"hydra.run.dir={directory}/train"]
    times = {"checkpoint_s": run_tool(train, directory)}
    output = directory / "model.nequip.pt2"
    compile_command = [f"{tools}/nequip-compile", str(directory / "model.ckpt"), str(output)]
    compile_command += ["--mode", "aotinductor", "--device", "cpu", "--target", "ase"]
    times["compile_s"] = run_tool(compile_command, directory)
    start = time.perf_counter()
    calc = NequIPCalculator.from_compiled_model(output, device="cpu", chemical_species_to_atom_type_map=True)
    times["load_s"] = time.perf_counter() - start
    return calc, times
