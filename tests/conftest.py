"""Shared fixtures: an isolated TFDS data dir, shrunken configs, and a CLI runner."""
import hashlib
import os
import subprocess
import sys
import textwrap

import pytest

import configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session", autouse=True)
def tfds_data_dir(tmp_path_factory):
  """mnist_5k is prepared once per test session in a temporary TFDS data dir."""
  path = str(tmp_path_factory.mktemp("tfds"))
  os.environ["TFDS_DATA_DIR"] = path
  return path


def tiny(name="mlp", **overrides):
  """A config shrunk to run in a second or two on mnist_5k."""
  base = dict(num_epochs=1, min_steps=0, batch_size=64, steps_per_call=8, log_every_steps=20,
              **{"checkpoint.min_seconds": 0})  # a checkpoint every epoch, however short
  return configs.load(name, **{**base, **overrides})


def saved_state(workdir, step=None):
  """(TrainState, step) stored in a workdir's newest checkpoint (or `step`)."""
  from ae_jax import checkpoint, train_state  # pylint: disable=g-import-not-at-top
  _, abstract = train_state.abstract_state(checkpoint.read_config(workdir))
  found = checkpoint.restore_newest(checkpoint.manager(workdir, create=False), abstract, step)
  return found.state, found.step


def run_cli(module, *args, timeout=300):
  """Runs `python -m MODULE ARGS` from the repo root; returns the CompletedProcess."""
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout, env={**os.environ, "JAX_PLATFORMS": "cpu"})


# The small CLI training run that test_main and test_cluster_cli share (the clustering test
# works on a copy): 2 epochs of 35 steps.
MLP_CLI = ["--config=configs/mlp.py", "--config.num_epochs=2", "--config.batch_size=128",
           "--config.log_every_steps=10", "--config.checkpoint.min_seconds=0"]


@pytest.fixture(scope="session")
def cli_mlp_run(tmp_path_factory):
  """(workdir, CompletedProcess) of `python -m ae_jax.main` with MLP_CLI, trained once."""
  workdir = str(tmp_path_factory.mktemp("cli_mlp"))
  proc = run_cli("ae_jax.main", f"--workdir={workdir}", *MLP_CLI)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def assert_user_error(proc, *fragments):
  """One `error:` line on stderr naming the problem, exit code 2, no traceback."""
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("error:")]
  assert len(lines) == 1, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  for f in fragments:
    assert f in lines[0], lines[0]


def tree_hash(path):
  """Hash of the names and bytes of everything under `path` (or of the file `path`)."""
  h = hashlib.sha256()
  if os.path.isfile(path):
    h.update(open(path, "rb").read())
  for root, dirs, files in os.walk(path):
    dirs.sort()
    h.update(f"dir {os.path.relpath(root, path)}\n".encode())
    for name in sorted(files):
      with open(os.path.join(root, name), "rb") as f:
        h.update(f"file {name}\n".encode() + f.read())
  return h.hexdigest()


SWEEP_CONFIG = """
from configs import mlp


def get_config():
  c = mlp.get_config()
  c.num_epochs = 1
  c.batch_size = 128
  c.steps_per_call = 16
  c.log_every_steps = 16
  return c


def get_sweep():
  return {SWEEP}
"""


def sweep_config_file(tmp_path, sweep_expr='{"arch.latent_dim": [4, 8]}'):
  """A config file of 1-epoch MLP runs whose get_sweep() returns `sweep_expr`."""
  path = tmp_path / "tiny_sweep.py"
  path.write_text(textwrap.dedent(SWEEP_CONFIG).replace("{SWEEP}", sweep_expr))
  return str(path)
