"""Shared fixtures: an isolated TFDS data dir, shrunken configs, and a CLI runner."""
import hashlib
import os
import subprocess
import sys

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
  base = dict(num_epochs=1, min_steps=0, batch_size=64, steps_per_call=8, log_every_steps=20)
  return configs.load(name, **{**base, **overrides})


def run_cli(module, *args, timeout=300):
  """Runs `python -m MODULE ARGS` from the repo root; returns the CompletedProcess."""
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout, env={**os.environ, "JAX_PLATFORMS": "cpu"})


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
