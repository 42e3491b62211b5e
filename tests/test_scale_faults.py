"""The faults of scale: two launches on one workdir, a disk that fills during a checkpoint
save, and a sweep point that dies while the others run on (submitit's local executor, and
a one-node Slurm where .ci/slurm_up can start one)."""
import contextlib
import csv
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import orbax.checkpoint as ocp
import pytest

from ae_jax import checkpoint, errors, faults, train
from tests.conftest import ROOT, assert_user_error, run_cli, saved_state, sweep_config_file, tiny
from tests.conftest import tree_hash


def _wait_for(path, proc, timeout=120):
  t0 = time.time()
  while not os.path.exists(path):
    assert proc.poll() is None and time.time() - t0 < timeout, proc.communicate()[1][-2000:]
    time.sleep(0.05)


def test_second_launch_on_a_live_run_is_refused_naming_the_owner(tmp_path):
  workdir = str(tmp_path / "run")
  args = ["--config=configs/mlp.py", "--config.num_epochs=1", "--config.batch_size=256"]
  first = subprocess.Popen([sys.executable, "-m", "ae_jax.main", f"--workdir={workdir}", *args],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "JAX_PLATFORMS": "cpu"})
  lock = os.path.join(workdir, faults.LOCK)
  try:
    _wait_for(lock, first)
    first.send_signal(signal.SIGSTOP)  # holds the lock for as long as the second launch takes
    before = tree_hash(workdir)
    second = run_cli("ae_jax.main", f"--workdir={workdir}", *args)
    assert_user_error(second, f"in use by pid {first.pid} on {socket.gethostname()}", lock)
    assert tree_hash(workdir) == before
  finally:
    first.send_signal(signal.SIGCONT)
  out, err = first.communicate(timeout=300)
  assert first.returncode == 0, err[-2000:]
  assert not os.path.exists(lock) and "trained 17 steps" in out


def test_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, capsys):
  workdir = tmp_path / "run"
  dead = subprocess.Popen(["true"])
  dead.wait()
  workdir.mkdir()
  (workdir / faults.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
  state = train.train_and_evaluate(tiny(), str(workdir))
  err = capsys.readouterr().err
  assert f"warning: taking over the stale lock {workdir / faults.LOCK} of pid {dead.pid}" in err
  assert int(state.step) == saved_state(str(workdir))[1] > 0
  assert not (workdir / faults.LOCK).exists()


def test_lock_of_another_host_is_never_taken_over(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / faults.LOCK).write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "noon"}))
  with pytest.raises(errors.UserError, match="in use by pid 1 on elsewhere \\(since noon\\)"):
    train.train_and_evaluate(tiny(), str(workdir))
  assert os.listdir(workdir) == [faults.LOCK]


def _dir_bytes(path):
  return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


@contextlib.contextmanager
def _small_disk(tmp_path):
  """(dir, mounted): a 64 MiB tmpfs where this process may mount one, else a plain dir."""
  disk = tmp_path / "disk"
  disk.mkdir()
  mounted = shutil.which("mount") is not None and subprocess.run(
      ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True).returncode == 0
  try:
    yield disk, mounted
  finally:
    if mounted:
      subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk, room):
  """Fills `disk` with ballast up to `room` bytes short of full."""
  with open(disk / "ballast", "wb") as f:
    try:
      while True:
        f.write(b"\0" * 2**20)
        f.flush()
    except OSError as e:
      assert e.errno == errno.ENOSPC
  with open(disk / "ballast", "r+b") as f:
    f.truncate(os.path.getsize(disk / "ballast") - room)


def test_disk_full_during_a_checkpoint_save_fails_cleanly_and_keeps_the_previous_one(
    tmp_path, monkeypatch, capsys):
  """On a tmpfs filled to just short of another checkpoint's size where the test may mount
  one; else orbax's save fails the way a full disk makes it fail."""
  with _small_disk(tmp_path) as (disk, mounted):
    workdir = str(disk / "run")
    config = tiny(num_epochs=1, **{"arch.hidden": (64,)})
    first = int(train.train_and_evaluate(config, workdir).step)
    size = _dir_bytes(checkpoint.step_dir(checkpoint.manager(workdir, create=False), first))
    if mounted:  # room for the log lines, not for another checkpoint
      _fill(disk, size // 3)
    else:
      def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", workdir)
      monkeypatch.setattr(ocp.CheckpointManager, "save", no_space)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
      errors.cli_main(train.train_and_evaluate)(tiny(num_epochs=2, **{"arch.hidden": (64,)}),
                                                workdir)
    err = capsys.readouterr().err
    assert exit_.value.code == errors.SaveFailed.exit_code != 0
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert lines == [f"error: cannot save the checkpoint {workdir}/checkpoints/{2 * first}: "
                     f"No space left on device; the checkpoint at step {first} is kept"], err
    assert checkpoint.steps(checkpoint.manager(workdir, create=False)) == [first]
    assert sorted(os.listdir(os.path.join(workdir, checkpoint.SUBDIR))) == [str(first)]
    assert not os.path.exists(os.path.join(workdir, faults.LOCK))
    if mounted:
      os.remove(disk / "ballast")
    monkeypatch.undo()
    assert saved_state(workdir)[1] == first  # still restorable; with room again, the run ends
    assert int(train.train_and_evaluate(tiny(num_epochs=2, **{"arch.hidden": (64,)}),
                                        workdir).step) == 2 * first


@pytest.fixture(scope="session")
def slurm():
  """A one-node Slurm on this machine (.ci/slurm_up), or the test is skipped saying why."""
  up = subprocess.run(["bash", os.path.join(ROOT, ".ci", "slurm_up")], capture_output=True,
                      text=True, timeout=900)
  if up.returncode != 0:
    reason = (up.stdout + up.stderr).strip().splitlines()[-1:] or ["no output"]
    print(f"skipping the Slurm sweep: {reason[0]}")
    pytest.skip(f"no Slurm here: {reason[0]}")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["local", "slurm"])
def test_sweep_jobs_run_in_parallel_and_a_dead_point_stops_no_other(tmp_path, request, launcher):
  if launcher == "slurm":
    request.getfixturevalue("slurm")
  config = sweep_config_file(
      tmp_path, '[{"seed": 0}, {"dataset": "npy:no_such_images.npy"}, {"seed": 1}]')
  root = tmp_path / "root"
  proc = run_cli("ae_jax.sweep", f"--config={config}", f"--workdir={root}",
                 f"--launcher={launcher}", "--max_parallel=2", timeout=600)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert [l for l in proc.stderr.splitlines() if l.startswith("error:")] == [
      "error: 1 of 3 sweep points failed: dataset=npy:no_such_images.npy"], proc.stderr[-3000:]
  rows = {r["point"]: r for r in csv.DictReader(open(root / "summary.csv"))}
  assert rows["seed=0"]["status"] == rows["seed=1"]["status"] == "done"
  assert rows["dataset=npy:no_such_images.npy"]["status"].startswith("failed: error: ")
  assert "no_such_images.npy" in rows["dataset=npy:no_such_images.npy"]["status"]
  assert all(float(rows[p]["eval_loss"]) > 0 for p in ("seed=0", "seed=1"))
  assert rows["seed=0"]["eval_loss"] != rows["seed=1"]["eval_loss"]
  assert proc.stdout.count("finished") == 2 and len(list((root / "jobs").glob("*_log.out"))) == 3
