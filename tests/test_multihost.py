"""Many hosts on one machine: 2 processes × 2 CPU devices on 127.0.0.1 (streaming, each its
own rows) against 1 process × 4 devices (in memory), checkpoints moved between the two
layouts, and `kill -9` of one or both."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ae_jax import checkpoint
from tests.conftest import ROOT, saved_state

# 20 steps an epoch (4,500 training images, batch 224 = 4 × 56), a log line every step.
ARGS = ["--config=configs/mlp.py", "--config.batch_size=224", "--config.steps_per_call=1",
        "--config.log_every_steps=1", "--config.checkpoint.min_seconds=0"]


def _env(devices):
  return {**os.environ, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(workdir, *args, processes=2):
  """Launches `ae_jax.main` as `processes` processes (2 devices each), or 1 with 4 devices."""
  return _launch(["ae_jax.main", f"--workdir={workdir}", *ARGS, *args], processes)


def _launch(module_args, processes):
  """`python -m MODULE ARGS` as `processes` processes of one job on 127.0.0.1."""
  if processes == 1:
    cmds, env = [[]], _env(4)
  else:
    port = _free_port()
    cmds = [["--multihost", f"--coordinator_address=127.0.0.1:{port}",
             f"--num_processes={processes}", f"--process_id={i}"] for i in range(processes)]
    env = _env(2)
  return [subprocess.Popen([sys.executable, "-m", *module_args, *c], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for c in cmds]


def _finish(procs, timeout=300):
  outs = [p.communicate(timeout=timeout) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def _losses(workdir):
  return [(m["step"], m["train_loss"]) for m in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))
          if "train_loss" in m]


def _assert_close(a, b, tol=1e-5):
  assert [s for s, _ in a] == [s for s, _ in b]
  np.testing.assert_allclose([l for _, l in a], [l for _, l in b], rtol=0, atol=tol)


@pytest.mark.slow
def test_two_processes_match_one_and_their_checkpoints_move_between_layouts(tmp_path):
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  _finish(_start(one, "--config.num_epochs=1", processes=1))
  outs = _finish(_start(two, "--config.num_epochs=1"))
  assert "process 1 of 2" in outs[1][0] and "trained 20 steps" in outs[1][0]
  # each process reads its own rows of every batch; the 1-process run holds them on device
  assert "each of the 2 processes reads its own rows of every batch" in outs[1][0]
  _assert_close(_losses(one), _losses(two))
  assert [s for s, _ in _losses(two)] == list(range(1, 21))  # one line per log step, one writer
  assert len([f for f in os.listdir(two) if f.startswith("events.out.tfevents")]) == 1
  # A plain orbax client reads the 2-process checkpoint in this (1-device) process.
  path = os.path.join(checkpoint.step_dir(checkpoint.manager(two, create=False), 20), "state")
  with ocp.PyTreeCheckpointer() as client:
    meta = client.metadata(path)
    as_numpy = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                      meta.item_metadata.tree)
    raw = client.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
  assert int(raw["step"]) == 20
  np.testing.assert_array_equal(raw["params"]["decoder"]["Dense_0"]["kernel"],
                                np.asarray(saved_state(two)[0].params["decoder"]["Dense_0"]["kernel"]))
  # Each run goes on for a second epoch in the other layout: 1 → 2 processes and 2 → 1.
  _finish(_start(one, "--config.num_epochs=2"))
  _finish(_start(two, "--config.num_epochs=2", processes=1))
  _assert_close(_losses(one), _losses(two))
  assert _losses(one)[-1][0] == 40
  embed = subprocess.run([sys.executable, "-m", "ae_jax.embed", f"--workdir={one}",
                          f"--output={tmp_path / 'z.npy'}"], cwd=ROOT, env=_env(1),
                         capture_output=True, text=True, timeout=300)
  assert embed.returncode == 0, embed.stderr[-2000:]
  assert np.load(tmp_path / "z.npy").shape[0] == 5000
  # The same command as a 2-process job: each encodes half the images, process 0 writes.
  outs = _finish(_launch(["ae_jax.embed", f"--workdir={one}", f"--output={tmp_path / 'z2.npy'}"], 2))
  assert "process 1: encoded images 2500..5000 of 5000" in outs[1][0] and "wrote" not in outs[1][0]
  assert "process 0: encoded images 0..2500 of 5000" in outs[0][0] and "wrote 5000×" in outs[0][0]
  np.testing.assert_allclose(np.load(tmp_path / "z2.npy"), np.load(tmp_path / "z.npy"), atol=1e-5)
  # ae_jax.cluster likewise: each process encodes half the sample, process 0 clusters it.
  outs = _finish(_launch(["ae_jax.cluster", "--config=configs/cluster.py", f"--workdir={one}",
                          "--config.max_points=600"], 2))
  assert "process 1: encoded images 300..600 of 600" in outs[1][0]
  assert "this process encoded its share" in outs[1][0] and "clustered 600 points" in outs[0][0]
  assert len(open(os.path.join(one, "cluster", "labels.csv")).readlines()) == 601


def _wait_for(path, procs, timeout=240):
  t0 = time.time()
  while not os.path.exists(path):
    assert all(p.poll() is None for p in procs) and time.time() - t0 < timeout
    time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_of_both_then_rerun_ends_bit_exact(tmp_path):
  ref, run = str(tmp_path / "ref"), str(tmp_path / "run")
  _finish(_start(ref, "--config.num_epochs=3"))
  procs = _start(run, "--config.num_epochs=3")
  # Killed once the epoch-1 checkpoint is complete (its manifest is written last).
  _wait_for(os.path.join(run, checkpoint.SUBDIR, "20", checkpoint.MANIFEST), procs)
  for p in procs:
    p.kill()
    p.wait()
  outs = _finish(_start(run, "--config.num_epochs=3"))
  assert "resuming from checkpoint at step" in outs[0][0]
  assert "taking over the stale lock" in outs[0][1]
  assert _losses(run) == _losses(ref)
  a, b = saved_state(ref)[0].params, saved_state(run)[0].params
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_kill_9_of_one_process_ends_the_other_within_60_s(tmp_path):
  workdir = str(tmp_path / "run")
  procs = _start(workdir, "--config.num_epochs=200")
  _wait_for(os.path.join(workdir, checkpoint.SUBDIR, "20", checkpoint.MANIFEST), procs)
  procs[1].send_signal(signal.SIGKILL)
  t0 = time.time()
  try:
    procs[0].wait(timeout=60)
  finally:
    for p in procs:
      p.kill()
  assert procs[0].returncode not in (0, None) and time.time() - t0 < 60
