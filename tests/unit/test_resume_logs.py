"""A resumed run's DVCLive directory is brought back to its checkpoint (physicsml.lightning.logs)."""

from __future__ import annotations

import json

import torch

from physicsml.lightning.logs import restore_logs


def test_logs_of_a_run_killed_mid_write_match_its_checkpoint(tmp_path):
    logs = tmp_path / "dvclive"
    metrics = logs / "plots" / "metrics"
    (metrics / "train" / "total").mkdir(parents=True)
    (metrics / "val" / "energy").mkdir(parents=True)
    # checkpoint after epoch 1 of 8 steps per epoch: rows at steps 7 and 15 are covered, 23 is not
    (metrics / "train" / "total" / "loss.tsv").write_text("step\tloss\n7\t3.5\n15\t3.25\n23\t3.0\n")
    (metrics / "val" / "energy" / "mae.tsv").write_text("step\tmae\n7\t0.5\n15\t0.25\n2")  # last row cut short
    (metrics / "epoch.tsv").write_text("step\tepoch\n7\t0\n15\t1\n23\t2\n")
    (logs / "metrics.json").write_text("")  # killed while DVCLive rewrote it
    torch.save({"global_step": 16, "epoch": 1}, tmp_path / "last.ckpt")

    restore_logs(logs, tmp_path / "last.ckpt")

    assert (metrics / "train" / "total" / "loss.tsv").read_text() == "step\tloss\n7\t3.5\n15\t3.25\n"
    assert (metrics / "val" / "energy" / "mae.tsv").read_text() == "step\tmae\n7\t0.5\n15\t0.25\n"
    summary = json.loads((logs / "metrics.json").read_text())
    assert summary == {"train": {"total": {"loss": 3.25}}, "val": {"energy": {"mae": 0.25}}, "epoch": 1, "step": 15}
    assert isinstance(summary["epoch"], int)


def test_logs_before_any_epoch_resume_from_nothing(tmp_path):
    logs = tmp_path / "dvclive"
    (logs / "plots" / "metrics").mkdir(parents=True)
    (logs / "plots" / "metrics" / "epoch.tsv").write_text("ste")
    torch.save({"global_step": 0, "epoch": 0}, tmp_path / "last.ckpt")
    restore_logs(logs, tmp_path / "last.ckpt")
    assert json.loads((logs / "metrics.json").read_text()) == {}
    assert not (logs / "plots" / "metrics" / "epoch.tsv").exists()


def test_logs_of_a_finished_run_are_left_as_they_were(tmp_path):
    logs = tmp_path / "dvclive"
    (logs / "plots" / "metrics" / "val").mkdir(parents=True)
    (logs / "plots" / "metrics" / "val" / "loss.tsv").write_text("step\tloss\n7\t0.5\n15\t0.25\n")
    (logs / "plots" / "metrics" / "epoch.tsv").write_text("step\tepoch\n7\t0\n15\t1\n")
    text = json.dumps({"val": {"loss": 0.25}, "epoch": 1, "step": 15}, indent=4) + "\n"  # DVCLive's own order
    (logs / "metrics.json").write_text(text)
    torch.save({"global_step": 16, "epoch": 1}, tmp_path / "last.ckpt")
    restore_logs(logs, tmp_path / "last.ckpt")
    assert (logs / "metrics.json").read_text() == text
