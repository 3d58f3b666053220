"""The README's "Using a trained model" examples run as written, against a saved model."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT, save_tiny_model


def section_code(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_using_a_trained_model_examples_run(tmp_path):
    blocks = section_code("Using a trained model")
    assert len(blocks) == 4  # ASE MD, geometry optimisation, OpenMM, the MD check
    save_tiny_model("egnn_model", tmp_path / "models" / "model.pt")
    # one interpreter for all (imports dominate), each block in its own namespace
    script = "\n".join(f"exec({block!r}, {{}})\nprint('<end of block>')" for block in blocks)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.split("<end of block>")
    assert re.search(r"^0\.10 ps: E = -?\d+\.\d{4} eV$", outputs[0], flags=re.MULTILINE)
    assert "kJ/mol" in outputs[2]
    assert "stable_fraction" in outputs[3]
