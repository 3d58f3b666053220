"""Every model family learns through `dvc exp run -S model.name=<family>` on the shipped pipeline."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import dvc, git_env, make_dvc_project, ran, small_project

from physicsml.models import MODELS

pytestmark = pytest.mark.slow  # every family's training (minutes)


#: A few epochs each: the equivariant families learn forces much faster per epoch than EGNN.
EPOCHS = {
    "egnn_model": 20,
    "mace_model": 10,
    "nequip_model": 10,
    "tensor_net_model": 10,
    "ani_model": 10,
    "allegro_model": 20,
}


@pytest.fixture(scope="module")
def families_project(tmp_path_factory) -> Path:
    """One project with its data prepared, shared by the families' experiments."""
    project = make_dvc_project(tmp_path_factory.mktemp("families"))
    small_project(project, structures=400, shrink=False)
    subprocess.run(["git", "commit", "-qam", "small"], cwd=project, check=True, env=git_env())
    dvc(project, "repro", "prebatch")
    return project


@pytest.mark.parametrize("family", sorted(MODELS))
def test_every_family_learns_through_dvc_exp_run(families_project, family):
    """`dvc exp run -S model.name=<family>` with nothing else changed trains that family."""
    dvc_project = families_project
    subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=dvc_project, check=True)
    epochs = f"trainer.max_epochs={EPOCHS[family]}"
    output = dvc(dvc_project, "exp", "run", "-S", f"model.name={family}", "-S", epochs)
    assert ran(output) == {"train", "predict", "md"}  # every family is run in MD as well
    from physicsml.io.arrow import read_table

    validation = read_table(dvc_project / "data/featurised/validation.arrow")
    zero = float(np.mean(np.abs(np.concatenate([np.asarray(f) for f in validation["forces"].to_pylist()]))))
    curve = (dvc_project / "dvclive/plots/metrics/val/forces/mae.tsv").read_text().splitlines()[1:]
    learned = min(float(line.split("\t")[-1]) for line in curve)  # best epoch: single epochs are noisy
    print(f"{family}: best validation force MAE {learned:.3f} eV/Å, zero forces {zero:.3f} eV/Å")
    assert len(curve) == EPOCHS[family] and learned < 0.7 * zero
