"""Reliability: preemption, kill -9, bit-exact resume, damaged checkpoints, NaN guard, bad input.

The runs use one small config (the report-004 MLP with 64 hidden units, 3 epochs of
70 steps, and a BatchNorm/Dropout variant), so two uninterrupted reference runs serve
every comparison. Signals go to a child process once it has printed a given line, or
are raised from inside a train/eval call or the final plots (`signal.raise_signal`: the handler
has run when it returns), so every stop lands where the test expects.

    python -m pytest -q tests/test_reliability.py
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import jax
import numpy as np
import pytest

from ae_jax import checkpoint, data, errors, models, steps, train, train_state
from tests.conftest import ROOT, assert_user_error, run_cli, saved_state, tiny, tree_hash

SMALL = {"num_epochs": 3, "arch.hidden": (64,)}
CLI = ["--config=configs/mlp.py", "--config.num_epochs=3", "--config.batch_size=64",
       "--config.steps_per_call=8", "--config.log_every_steps=20", "--config.arch.hidden=64,",
       "--config.checkpoint.min_seconds=0"]
BN = {"arch.batch_norm": True, "arch.dropout": 0.5}
TOTAL = 210  # 3 epochs of 4,500 // 64 steps


def saved_steps(workdir):
  return checkpoint.steps(checkpoint.manager(workdir, create=False))


def state_at(workdir, step):
  """{path: array} of the whole TrainState in the checkpoint at `step`."""
  state, _ = saved_state(workdir, step)
  return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(state)[0]}


def assert_same_run(expected, actual, step=TOTAL):
  """Bit-identical state at `step` (params, batch stats, optimizer + plateau state, rng, step)
  and identical metrics lines up to it."""
  state_e, state_a = state_at(expected, step), state_at(actual, step)
  assert state_e.keys() == state_a.keys()
  for k, v in state_e.items():
    np.testing.assert_array_equal(v, state_a[k], err_msg=k)
  metrics = lambda w: [l for l in open(os.path.join(w, "metrics.jsonl")) if json.loads(l)["step"] <= step]
  assert metrics(expected) == metrics(actual)


def run_until(workdir, prefix, sig, *args):
  """Runs the CLI on `workdir`; sends `sig` once a stdout line starts with `prefix`. → (rc, out, err)."""
  with tempfile.TemporaryFile("w+") as err:
    proc = subprocess.Popen([sys.executable, "-m", "ae_jax.main", f"--workdir={workdir}", *CLI, *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    out = []
    try:
      for line in proc.stdout:
        out.append(line)
        if sig is not None and line.startswith(prefix):
          proc.send_signal(sig)
          sig = None
      proc.wait()
    finally:
      watchdog.cancel()
    err.seek(0)
    return proc.returncode, "".join(out), err.read()


@pytest.fixture
def default_handlers():
  """SIGINT raises KeyboardInterrupt and SIGTERM ends the process, whatever this process
  inherited (a job started in the background by a non-interactive shell ignores SIGINT) or an
  earlier test left; the previous handlers come back afterwards."""
  wanted = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
  old = {sig: signal.signal(sig, handler) for sig, handler in wanted.items()}
  yield wanted
  for sig, handler in old.items():
    signal.signal(sig, handler)


def signal_inside(monkeypatch, factory, sig, when=lambda result: True):
  """The function built by `steps.<factory>` raises `sig` in this thread once, after a call
  whose result satisfies `when` (the loop then stops at that call boundary)."""
  real, sent = getattr(steps, factory), []

  def make(*args, **kwargs):
    fn = real(*args, **kwargs)

    def wrapped(*a):
      result = fn(*a)
      if not sent and when(result):
        sent.append(sig)
        signal.raise_signal(sig)
      return result
    return wrapped

  monkeypatch.setattr(steps, factory, make)


def damage(workdir, step, how):
  """Truncates, or flips 16 bytes in the middle of, the largest file of a checkpoint's state."""
  state = os.path.join(workdir, checkpoint.SUBDIR, str(step), "state")
  path = max((os.path.join(r, f) for r, _, fs in os.walk(state) for f in fs), key=os.path.getsize)
  raw = bytearray(open(path, "rb").read())
  mid = len(raw) // 2
  if how == "truncate":
    raw = raw[:mid]
  else:
    raw[mid:mid + 16] = bytes(b ^ 0xFF for b in raw[mid:mid + 16])
  with open(path, "wb") as f:
    f.write(raw)


def copy_of(workdir, tmp_path):
  return shutil.copytree(workdir, str(tmp_path / "copy"))


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
  """An uninterrupted run of the small config: what every interrupted run must end equal to."""
  workdir = str(tmp_path_factory.mktemp("ref") / "mlp")
  train.train_and_evaluate(tiny(**SMALL), workdir)
  return workdir


@pytest.fixture(scope="module")
def bn_ref(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ref") / "mlp_bn")
  train.train_and_evaluate(tiny(**SMALL, **BN), workdir)
  return workdir


# Preemption and bit-exact resume.

@pytest.mark.slow
def test_sigterm_in_compile_then_kill_9_in_epoch_3_then_rerun_ends_bit_exact(ref, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  # SIGTERM while the first call compiles: that call's 8 steps finish, then a mid-epoch save.
  rc, out, err = run_until(workdir, "compiling", signal.SIGTERM)
  stopped = re.search(r"stopped by SIGTERM at step (\d+): checkpoint saved; rerun the same command", out)
  assert rc == 0 and stopped, err[-3000:]
  assert int(stopped[1]) < 70 and saved_steps(workdir) == [int(stopped[1])]  # 8 unless compiling was fast
  # kill -9 once epoch 3 trains: the epoch-1 checkpoint was finished before the epoch-2 one
  # began, which may still be written in the background (orbax's temporary directory).
  rc, out, err = run_until(workdir, f"step 164/{TOTAL}", signal.SIGKILL)
  assert rc == -signal.SIGKILL and f"resuming from checkpoint at step {stopped[1]}" in out, err[-3000:]
  capsys.readouterr()
  train.train_and_evaluate(tiny(**SMALL), workdir)
  resumed = re.search(r"resuming from checkpoint at step (\d+)", capsys.readouterr().out)
  assert resumed and int(resumed[1]) in (70, 140)
  assert_same_run(ref, workdir)


@pytest.mark.slow
def test_streamed_run_stopped_mid_epoch_then_killed_ends_bit_exact_as_the_in_memory_one(ref, tmp_path):
  workdir, streamed = str(tmp_path / "run"), "--config.stream=True"
  rc, out, err = run_until(workdir, f"step 40/{TOTAL}", signal.SIGTERM, streamed)
  stopped = re.search(r"stopped by SIGTERM at step (\d+): checkpoint saved", out)
  assert rc == 0 and stopped, err[-3000:]
  step = int(stopped[1])
  meta = checkpoint.read_meta(checkpoint.manager(workdir, create=False), step)
  assert meta["data_iterator"] == {"next_index": step} and 0 < step % 70  # mid-epoch
  # kill -9 in epoch 3: the epoch-1 checkpoint is finished, the epoch-2 one maybe not yet.
  rc, out, err = run_until(workdir, f"step 164/{TOTAL}", signal.SIGKILL, streamed)
  assert rc == -signal.SIGKILL and f"resuming from checkpoint at step {step}" in out, err[-3000:]
  rc, out, err = run_until(workdir, "", None, streamed)
  resumed = re.search(r"resuming from checkpoint at step (\d+)", out)
  assert rc == 0 and resumed and int(resumed[1]) in (70, 140), err[-3000:]
  assert_same_run(ref, workdir)  # the reference trained in memory


def test_sigint_mid_epoch_then_sigterm_in_eval_resume_bit_exact_with_batchnorm_dropout(
    bn_ref, tmp_path, monkeypatch, capsys, default_handlers):
  workdir, config = str(tmp_path / "run"), tiny(**SMALL, **BN)
  with monkeypatch.context() as m:
    signal_inside(m, "make_train_call", signal.SIGINT, when=lambda out: int(out[0].step) > 20)
    assert int(train.train_and_evaluate(config, workdir).step) == 24
  assert "stopped by SIGINT at step 24: checkpoint saved" in capsys.readouterr().out
  with monkeypatch.context() as m:
    signal_inside(m, "make_eval", signal.SIGTERM)
    train.train_and_evaluate(config, workdir)
  out = capsys.readouterr().out
  assert "resuming from checkpoint at step 24" in out and "stopped by SIGTERM at step 70" in out
  assert saved_steps(workdir) == [24, 70]
  assert_same_run(bn_ref, workdir, step=70)


def test_same_config_and_seed_give_identical_metrics_and_state(
    ref, tmp_path, monkeypatch, default_handlers):
  workdir, real = str(tmp_path / "again"), train.write_plots

  def interrupted_plots(*args):  # a signal once every step is done: re-delivered at the end
    signal.raise_signal(signal.SIGINT)  # the loop's handler takes it: nothing is raised here
    real(*args)

  monkeypatch.setattr(train, "write_plots", interrupted_plots)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(tiny(**SMALL), workdir)
  assert os.path.getsize(os.path.join(workdir, "plots", "reconstructions.png")) > 1000
  assert signal.getsignal(signal.SIGINT) is default_handlers[signal.SIGINT]  # put back
  assert_same_run(ref, workdir)


# Damaged and half-written checkpoints.

def test_damaged_newest_checkpoints_are_set_aside_and_redone_bit_exact(ref, tmp_path, capsys):
  workdir = copy_of(ref, tmp_path)
  damage(workdir, 210, "truncate")
  damage(workdir, 140, "flip")  # orbax would read these bytes silently; the checksums catch them
  damaged = {s: tree_hash(os.path.join(workdir, checkpoint.SUBDIR, str(s))) for s in (140, 210)}
  # What a kill during a save leaves: orbax's temporary directory, never renamed to its step.
  tmp = os.path.join(workdir, checkpoint.SUBDIR, "210.orbax-checkpoint-tmp")
  shutil.copytree(os.path.join(ref, checkpoint.SUBDIR, "210", "meta"), os.path.join(tmp, "meta"))
  assert saved_steps(workdir) == [70, 140, 210]
  capsys.readouterr()
  # keep=1: the garbage collection must never leave the run without a readable checkpoint.
  train.train_and_evaluate(tiny(**SMALL, **{"checkpoint.keep": 1}), workdir)
  out, err = capsys.readouterr()
  for s in (210, 140):
    assert f"checkpoint {workdir}/checkpoints/{s} is unreadable" in err
    assert tree_hash(os.path.join(workdir, checkpoint.CORRUPT_SUBDIR, str(s))) == damaged[s]
  assert "resuming from checkpoint at step 70" in out
  assert sorted(os.listdir(os.path.join(workdir, checkpoint.SUBDIR))) == [str(TOTAL)]
  assert_same_run(ref, workdir)


# Divergence.

def test_non_finite_loss_stops_at_the_first_bad_step_and_keeps_good_checkpoints(tmp_path, capsys):
  """Holds wherever the loss first turns non-finite: the step depends on rounding (the ISA,
  the thread count), so the test reads it from the run and checks the run against it."""
  workdir = str(tmp_path / "run")
  # AdamW with a weight decay of 3e4 × lr 1e-3 multiplies the weights by -29 per step: the
  # loss overflows within a few epochs of 3 steps (200 training images, batch 64).
  config = tiny(optimizer="adamw", weight_decay=3e4, val_fraction=0.96, num_epochs=20,
                **{"arch.hidden": (64,)})
  run = lambda: errors.cli_main(train.train_and_evaluate)(config, workdir)
  with pytest.raises(SystemExit) as exit_:
    run()
  err = capsys.readouterr().err
  assert exit_.value.code == errors.NonFiniteLoss.exit_code != 0
  lines = [l for l in err.splitlines() if l.startswith("error:")]
  # Either a train step's loss turns non-finite first, or the eval at an epoch end does.
  found = re.fullmatch(r"error: non-finite (eval )?loss (at|after) step (\d+); kept the last "
                       r"good checkpoint \(step (\d+)\)", lines[0])
  assert len(lines) == 1 and found, err
  in_eval, bad, kept = bool(found[1]), int(found[3]), int(found[4])
  spe, total = json.load(open(os.path.join(workdir, "config.json")))["derived"]["steps_per_epoch"], 60
  assert spe == 3 and spe <= bad < total, bad
  # The kept checkpoint is the newest epoch end before the bad state: the one before step
  # `bad` ran (kept == bad when `bad` starts an epoch, earlier if not), or for a bad eval
  # after step `bad` (an epoch end) the epoch before it.
  assert kept == (bad - spe if in_eval else bad - bad % spe) and saved_steps(workdir)[-1] == kept
  for line in open(os.path.join(workdir, "metrics.jsonl")):
    assert all(np.isfinite(v) for v in json.loads(line).values())
  for s in saved_steps(workdir):  # every checkpoint holds a finite state
    state = saved_state(workdir, s)[0]
    assert int(state.step) == s <= kept
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state.params))
  # Replaying one step at a time from the kept checkpoint: finite until `bad`, not at `bad`.
  ds, val = data.split(data.load(config.dataset), config.val_fraction, config.seed)
  model = models.build(config, ds.image_shape)
  tx = train_state.optimizer(config, len(ds) // config.batch_size)
  mesh = steps.make_mesh(config.batch_size)
  state, _ = saved_state(workdir, kept)
  chunk = steps.make_train_call(model, tx, config, n_train=len(ds), mesh=mesh)
  state, images = steps.replicate((state, ds.images), mesh)
  perm = steps.epoch_order(config, len(ds), kept, mesh)
  for s in range(kept, bad if in_eval else bad + 1):
    state, perm, first_bad = chunk(state, perm, images, 1, False)
    assert int(first_bad) == (bad if s == bad else -1), s
  if in_eval:  # the train steps up to `bad` were finite; the eval after them is not
    ev = steps.make_eval(model, config, mesh)(train_state.variables(state), steps.replicate(val.images, mesh))
    assert not np.isfinite(float(ev["eval_loss"]))
  # Rerunning resumes from the kept checkpoint, meets the same step and leaves the checkpoints.
  before = tree_hash(os.path.join(workdir, checkpoint.SUBDIR))
  with pytest.raises(SystemExit) as exit_:
    run()
  out, err = capsys.readouterr()
  assert exit_.value.code == errors.NonFiniteLoss.exit_code
  assert f"resuming from checkpoint at step {kept}" in out and lines[0] in err.splitlines()
  assert tree_hash(os.path.join(workdir, checkpoint.SUBDIR)) == before


# Bad input: one `error:` line naming the problem, exit code 2, the workdir unchanged.
# (tests/test_main.py covers an unknown key, a wrong type, a missing npy file, an unknown
# dataset and model, a run of a different config, and a wrong ndim.)

def _edit_config_json(workdir):  # by hand: a latent size that the checkpoints do not have
  path = os.path.join(workdir, "config.json")
  config = json.load(open(path))
  config["arch"]["latent_dim"] = 16
  json.dump(config, open(path, "w"))


def _damage_all(workdir):
  for s in saved_steps(workdir):
    damage(workdir, s, "truncate")


def _replace_by_a_file(workdir):
  shutil.rmtree(workdir)
  open(workdir, "w").write("mine")


ROWS = [  # (id, CLI arguments or config overrides, change to a copy of the reference run
          #  (None: a fresh workdir), fragment of the error line)
    ("unknown nested key", [*CLI, "--config.arch.widht=64"], None, "config.arch.widht"),
    ("wrong type of a nested key", [*CLI, "--config.checkpoint.keep=x"], None, "checkpoint.keep"),
    ("missing config file", ["--config=configs/no_such.py"], None, "configs/no_such.py"),
    ("config file that raises", ["--config={a}/broken.py"], None, "ValueError: no such field"),
    ("checkpoint cadence 0", {"checkpoint.every_epochs": 0}, None, "checkpoint.every_epochs"),
    ("negative checkpoint seconds", {"checkpoint.min_seconds": -1.0}, None,
     "config.checkpoint.min_seconds must be a number of seconds >= 0"),
    ("negative augmentation", {"pose_augment.max_shift": -1.0}, None, "config.pose_augment.max_shift"),
    ("arch field the model lacks", {"model": "vae"}, None, "config.arch.batch_norm is not a field"),
    ("NaN pixels", {"dataset": "npy:{a}/x_nan.npy"}, None, "NaN"),
    ("labels length mismatch", {"dataset": "npy:{a}/x.npy,{a}/y_short.npy"}, None, "vector of 100"),
    ("not an npy file", {"dataset": "npy:{a}/not.npy"}, None, "cannot read images file"),
    ("batch larger than the data", {"dataset": "npy:{a}/x.npy", "batch_size": 128}, None, "exceeds"),
    ("init_from a missing run", {"init_from": "{a}/missing"}, None, "no trained run"),
    ("init_from a run of another model", {**SMALL, "init_from": "{bn_ref}"}, None,
     "does not fit this model (init_from): params.decoder.BatchNorm_0.bias is in the checkpoint but"),
    ("config.json edited by hand", {**SMALL, "arch.latent_dim": 16}, _edit_config_json,
     "params.decoder.Dense_0.kernel is (8, 64) float32 in the checkpoint, (16, 64) float32"),
    ("every checkpoint damaged", SMALL, _damage_all, "no readable checkpoint"),
    ("config.json unreadable", SMALL, lambda w: open(os.path.join(w, "config.json"), "w").write("{"),
     "cannot read"),
    ("workdir is a file", {}, _replace_by_a_file, "is a file"),
]


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
  path = tmp_path_factory.mktemp("arrays")
  x = np.random.default_rng(0).random((100, 28, 28), np.float32)
  np.save(path / "x.npy", x)
  np.save(path / "x_nan.npy", np.where(x > 0.99, np.nan, x))
  np.save(path / "y_short.npy", np.zeros(99, np.int64))
  (path / "not.npy").write_text("not an array")
  (path / "broken.py").write_text("def get_config():\n  raise ValueError('no such field')\n")
  return path


@pytest.mark.parametrize("run,change,fragment", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_is_one_error_line_exit_2_and_changes_nothing(
    ref, bn_ref, arrays, tmp_path, capsys, run, change, fragment):
  workdir = str(tmp_path / "fresh")
  if change:
    workdir = copy_of(ref, tmp_path)
    change(workdir)
  before = tree_hash(workdir)
  fill = lambda v: v.format(a=arrays, bn_ref=bn_ref) if isinstance(v, str) else v
  if isinstance(run, list):  # through the command line
    proc = run_cli("ae_jax.main", f"--workdir={workdir}", *map(fill, run))
  else:  # through the API, wrapped as the command line wraps it
    with pytest.raises(SystemExit) as exit_:
      errors.cli_main(train.train_and_evaluate)(tiny(**{k: fill(v) for k, v in run.items()}), workdir)
    proc = subprocess.CompletedProcess([], exit_.value.code, *capsys.readouterr())
  assert_user_error(proc, fragment)
  assert tree_hash(workdir) == before


def test_overwrite_replaces_a_run_of_another_config(ref, tmp_path, capsys):
  workdir = copy_of(ref, tmp_path)
  train.train_and_evaluate(tiny(**{**SMALL, "arch.latent_dim": 4, "overwrite": True, "num_epochs": 0}),
                           workdir)
  assert "arch.latent_dim (8 in the workdir, 4 now)" in capsys.readouterr().out
  assert not os.path.exists(os.path.join(workdir, checkpoint.SUBDIR))
  assert json.load(open(os.path.join(workdir, "config.json")))["arch"]["latent_dim"] == 4
