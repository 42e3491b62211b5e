"""Data parallel: 8 (simulated CPU) devices train and evaluate exactly like one.

The device count is fixed when JAX starts, so each side runs in its own process with
XLA_FLAGS=--xla_force_host_platform_device_count=N.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, assert_user_error

# Trains 20 single-step calls per model (so every step's loss is read back) and evaluates;
# prints {model: {"devices", "losses", "eval"}} as JSON.
_CHILD = r"""
import json, sys
import jax, numpy as np
import configs
from ae_jax import data, models, steps, train_state

out = {}
for name, overrides in json.loads(sys.argv[1]).items():
  config = configs.load("mlp", batch_size=64, **overrides)
  ds = data.load("mnist_5k").take(np.arange(640))
  model = models.build(config, ds.image_shape)
  tx = train_state.optimizer(config, len(ds) // config.batch_size)
  mesh = steps.make_mesh(config.batch_size)
  state = train_state.create(config, model, tx, ds.image_shape)
  state, images = steps.replicate((state, ds.images), mesh)
  chunk = steps.make_train_call(model, tx, config, n_train=len(ds), mesh=mesh)
  losses, perm = [], steps.epoch_order(config, len(ds), 0, mesh)
  for _ in range(20):
    state, perm, _ = chunk(state, perm, images, 1, True)  # zero_log_sums: log_sum is this step's loss
    losses.append(float(state.log_sum))
  ev = steps.make_eval(model, config, mesh)(train_state.variables(state), images[:300])
  out[name] = {"devices": jax.device_count(), "losses": losses,
               "eval": {k: float(v) for k, v in ev.items()}}
print(json.dumps(out))
"""

MODELS = {
    "mlp": {},
    "mlp_bn": {"model": "mlp_bn", "arch.batch_norm": True, "arch.dropout": 0.1},
}


def _env(devices):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
  return env


def _run_child(devices):
  proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(MODELS)], cwd=ROOT,
                        env=_env(devices), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs():
  return {n: _run_child(n) for n in (1, 8)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_eight_devices_follow_the_one_device_loss_trajectory(runs, name):
  one, eight = runs[1][name], runs[8][name]
  assert (one["devices"], eight["devices"]) == (1, 8)
  assert len(one["losses"]) == 20 and one["losses"][-1] < one["losses"][0]
  np.testing.assert_allclose(eight["losses"], one["losses"], rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_eval_under_sharding_matches_one_device(runs, name):
  one, eight = runs[1][name]["eval"], runs[8][name]["eval"]
  assert one.keys() == eight.keys()
  for k in one:  # 300 images: not a multiple of 8, so padding and masking are exercised
    np.testing.assert_allclose(eight[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_batch_not_divisible_by_devices_is_a_user_error(tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "ae_jax.main", "--config=configs/mlp.py", f"--workdir={workdir}",
       "--config.batch_size=12", "--config.num_epochs=1"],
      cwd=ROOT, env=_env(8), capture_output=True, text=True, timeout=300)
  assert_user_error(proc, "batch_size 12", "8 devices")
  assert not workdir.exists() or not any(workdir.iterdir())
