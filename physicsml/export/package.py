"""Writing the deployable file: refuse what plain tensors cannot feed, compile, store the contract.

The file is an AOTInductor package (``torch._inductor.aoti_compile_and_package``) of the program
of :mod:`physicsml.export.program`, with the contract of :mod:`physicsml.export.contract` in its
metadata. It is compiled under a temporary name beside the output and renamed when complete,
so a failed or interrupted export leaves no file that looks finished.
"""

from __future__ import annotations

import copy
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from ase.data import chemical_symbols
from torch.export import ExportedProgram

from physicsml.errors import ConfigError, InputError
from physicsml.export.contract import FORMAT_VERSION, METADATA_KEY, UNITS, signature
from physicsml.export.program import PlainInputs, example_inputs, export_program, with_outputs
from physicsml.inference.trained import TrainedModel

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def refusal(model: TrainedModel) -> tuple[str, str] | None:
    """``(field, reason)`` when the model reads inputs the file's plain tensors cannot give, else ``None``."""
    chemistry = model.metadata.get("chemistry") or {}
    if chemistry.get("atom_features") or chemistry.get("bond_features"):
        return "chemistry", (
            "it reads RDKit chemistry features (featurise.atom_features / bond_features), computed from bonds"
            " perceived by RDKit, which the exported program cannot do"
        )
    if model.metadata.get("atomic_energies_by_charge"):
        return "atomic_energies_by_charge", "its self-energies depend on formal charges perceived by RDKit"
    if model.datamodule.node_attrs_cols:
        columns = ", ".join(model.datamodule.node_attrs_cols)
        return "datamodule.node_attrs_cols", f"it reads per-atom input columns ({columns}) no structure carries"
    if model.energy_name is None:
        return "datamodule.y_graph_scalars", "it predicts no energy, and the file computes energy and forces"
    return None


def contract(model: TrainedModel, dtype: str, device: str, outputs: list[str]) -> dict[str, Any]:
    """The metadata a user of the file needs to build its inputs and read its outputs."""
    atomic_numbers = [int(z) for z in model.metadata["atomic_numbers"]]
    energies = model.metadata.get("atomic_energies") or {}
    datamodule = model.datamodule
    num_graph_attrs = int(model.hparams.get("num_graph_attrs") or 0)
    try:
        written_by = version("physicsml")
    except PackageNotFoundError:  # a source tree that was never installed
        written_by = "unknown"
    return {
        "format_version": FORMAT_VERSION,
        "physicsml_version": written_by,
        "model_name": model.name,
        "atomic_numbers": atomic_numbers,
        "elements": [chemical_symbols[z] for z in atomic_numbers],
        "cut_off": float(datamodule.cut_off),
        "self_interaction": bool(datamodule.self_interaction),
        "self_energies": {chemical_symbols[z]: float(energies.get(chemical_symbols[z], 0.0)) for z in atomic_numbers},
        "graph_attrs": list(datamodule.graph_attrs_cols or []),
        "graph_attrs_width": num_graph_attrs,
        "dtype": dtype,
        "device": torch.device(device).type,
        "units": UNITS,
        "has_uncertainty": any(name.endswith("_std") for name in outputs),
        "std_scale": {kind: factor for kind, factor in model.std_scale_of_kind.items() if f"{kind}_std" in outputs},
        **signature(num_graph_attrs, [name.removesuffix("_std") for name in outputs if name.endswith("_std")], dtype),
    }


def plain_inputs(model: TrainedModel, dtype: str, device: str) -> PlainInputs:
    """A copy of the model's network, cast and frozen, behind :class:`PlainInputs`."""
    net = copy.deepcopy(model.net).to(device=torch.device(device), dtype=DTYPES[dtype]).eval()
    net.requires_grad_(False)
    atomic_numbers = [int(z) for z in model.metadata["atomic_numbers"]]
    energies = model.metadata.get("atomic_energies") or {}
    self_energies = [float(energies.get(chemical_symbols[z], 0.0)) for z in atomic_numbers]
    num_elements = int(model.hparams.get("num_elements") or 0) or len(atomic_numbers)
    return PlainInputs(net, atomic_numbers, self_energies, num_elements, model.std_scale_of_kind)


def check_options(output: Path, dtype: str, device: str) -> None:
    """Raises ``ConfigError`` for a dtype, device or output name the export cannot honour."""
    if dtype not in DTYPES:
        raise ConfigError("export", "dtype", f"must be one of {', '.join(DTYPES)}, got {dtype!r}")
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise ConfigError("export", "device", f"must be cpu or cuda, got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("export", "device", "cuda was asked for, but torch sees no GPU here")
    if output.suffix != ".pt2":
        raise ConfigError("export", "output", f"the file must end in .pt2 (an AOTInductor package), got {output}")


def export_model(
    model: TrainedModel | str | os.PathLike, output: str | os.PathLike, dtype: str = "float32", device: str = "cpu"
) -> Path:
    """Write ``model`` (a saved model's path, or a loaded one) as an AOTInductor package at ``output``.

    Raises:
        InputError: a missing or invalid model file, or a model that cannot be exported (the reason named).
        ConfigError: an unknown dtype or device, a GPU asked for that is absent, an output not named ``*.pt2``.
    """
    output = Path(output)
    check_options(output, dtype, device)
    source = "<model>" if isinstance(model, TrainedModel) else str(model)
    loaded = model if isinstance(model, TrainedModel) else TrainedModel.load(model)
    refused = refusal(loaded)
    if refused is not None:
        raise InputError(source, None, refused[0], f"the model cannot be exported: {refused[1]}")
    program, metadata_of_file = exported_program(loaded, dtype, device)
    metadata = {METADATA_KEY: json.dumps(metadata_of_file)}
    partial = output.with_name(f".{output.stem}.{os.getpid()}.partial.pt2")
    try:
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(partial), inductor_configs={"aot_inductor.metadata": metadata}
        )
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def exported_program(model: TrainedModel, dtype: str, device: str) -> tuple[ExportedProgram, dict[str, Any]]:
    """The program the file compiles (:func:`~physicsml.export.program.export_program`) and its contract:
    ``ExportedPotential.from_program`` runs the two as the file would, without the compilation."""
    inputs = plain_inputs(model, dtype, device)
    example = example_inputs(
        inputs.atomic_numbers, int(model.hparams.get("num_graph_attrs") or 0), *dtype_device(inputs)
    )
    program = export_program(inputs, example)
    outputs = list(with_outputs(inputs, inputs.self_energy_of, inputs.std_scale)(*example))
    return program, contract(model, dtype, device, outputs)


def dtype_device(inputs: PlainInputs) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the network behind ``inputs``."""
    parameter = next(inputs.net.parameters())
    return parameter.dtype, parameter.device
