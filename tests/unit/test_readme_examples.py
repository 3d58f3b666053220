"""The README's "Using a trained model" examples run as written, against a saved model."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT, run_stage, save_tiny_model, write_molecules


def section_code(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_using_a_trained_model_examples_run(tmp_path):
    blocks = section_code("Using a trained model")
    assert len(blocks) == 5  # ASE MD, geometry optimisation, OpenMM, the MD check, embeddings
    save_tiny_model("egnn_model", tmp_path / "models" / "model.pt")
    import ase.io
    from ase.build import molecule

    ase.io.write(tmp_path / "new.extxyz", [molecule("CH3CH2OH"), molecule("H2O")])
    write_molecules(tmp_path / "train.extxyz", n=12)  # data/featurised/train.arrow, as the pipeline leaves it
    (tmp_path / "params.yaml").write_text("data: {source: train.extxyz, targets: {energy: energy, forces: forces}}\n")
    featurised = run_stage("featurise", "--params", "params.yaml", "--out", "data/featurised", cwd=tmp_path)
    assert featurised.returncode == 0, featurised.stderr
    # one interpreter for all (imports dominate), each block in its own namespace
    script = "\n".join(f"exec({block!r}, {{}})\nprint('<end of block>')" for block in blocks)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.split("<end of block>")
    assert re.search(r"^0\.10 ps: E = -?\d+\.\d{4} eV$", outputs[0], flags=re.MULTILINE)
    assert "kJ/mol" in outputs[2]
    assert "stable_fraction" in outputs[3]
    assert "(2, 8) (12, 8)" in outputs[4]  # 2 structures, 9 + 3 atoms, the tiny EGNN's 8 features
