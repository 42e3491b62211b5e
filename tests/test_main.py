"""End to end: `python -m ae_jax.main` writes the CONTRACT.md workdir, resumes, refuses bad input."""
import json
import os

import numpy as np
import pytest

from tests.conftest import MLP_CLI as TINY, assert_user_error, run_cli, tree_hash


@pytest.fixture(scope="module")
def trained(cli_mlp_run):
  return cli_mlp_run


def test_main_writes_every_contract_file(trained):
  workdir, proc = trained
  assert "622,504 parameters (2.37 MB)" in proc.stdout
  assert "ex/s" in proc.stdout and "ETA" in proc.stdout
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert steps == [35, 70]
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  train = [l for l in lines if "train_loss" in l]
  evals = [l for l in lines if "eval_loss" in l]
  assert len(evals) == 2 and train[-1]["train_loss"] < train[0]["train_loss"]
  assert evals[1]["eval_loss"] < evals[0]["eval_loss"]
  config = json.load(open(os.path.join(workdir, "config.json")))
  assert config["model"] == "mlp" and config["num_epochs"] == 2
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  for plot in ("loss_curve.png", "reconstructions.png"):
    assert os.path.getsize(os.path.join(workdir, "plots", plot)) > 5000


def test_rerun_of_a_finished_run_does_not_retrain(trained):
  workdir, _ = trained
  before = tree_hash(os.path.join(workdir, "checkpoints"))
  proc = run_cli("ae_jax.main", f"--workdir={workdir}", *TINY)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "already finished at step 70" in proc.stdout
  assert tree_hash(os.path.join(workdir, "checkpoints")) == before


@pytest.mark.parametrize("args,fragment", [
    (["--config.foo=1"], "foo"),
    (["--config.batch_size=abc"], "batch_size"),
    (["--config.dataset=npy:/nonexistent/x.npy"], "not found"),
    (["--config.dataset=no_such_tfds_dataset"], "no_such_tfds_dataset"),
    (["--config.model=resnet9000"], "unknown model"),
    (["--config.learning_rate=1e-3", "--config.arch.latent_dim=4"], "different config"),
])
def test_bad_input_is_one_error_line_and_leaves_workdir_unchanged(trained, args, fragment):
  workdir, _ = trained
  before = tree_hash(workdir)
  proc = run_cli("ae_jax.main", f"--workdir={workdir}", *TINY, *args)
  assert_user_error(proc, fragment)
  assert tree_hash(workdir) == before


def test_bad_npy_shape_in_a_fresh_workdir(tmp_path):
  np.save(tmp_path / "x.npy", np.zeros((10, 784), np.float32))
  workdir = tmp_path / "w"
  proc = run_cli("ae_jax.main", f"--workdir={workdir}", *TINY, f"--config.dataset=npy:{tmp_path / 'x.npy'}")
  assert_user_error(proc, "N×H×W")
  assert not workdir.exists()
