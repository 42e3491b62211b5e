"""Sweeps: a tiny 2-point sweep end to end, --print_only, resume, and bad sweep input."""
import csv

import pytest

from ae_jax import errors, sweep
from tests.conftest import assert_user_error, run_cli, sweep_config_file as _config_file

@pytest.mark.slow
def test_two_point_sweep_runs_each_point_and_writes_the_summary(tmp_path):
  root = tmp_path / "root"
  args = ["--config=" + _config_file(tmp_path), f"--workdir={root}", "--config.seed=3"]
  proc = run_cli("ae_jax.sweep", *args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in ("arch.latent_dim=4", "arch.latent_dim=8"):
    assert (root / name / "metrics.jsonl").is_file()
    assert '"seed": 3' in (root / name / "config.json").read_text()
  rows = list(csv.DictReader(open(root / "summary.csv")))
  assert [r["point"] for r in rows] == ["arch.latent_dim=4", "arch.latent_dim=8"]
  assert [r["arch.latent_dim"] for r in rows] == ["4", "8"]
  assert all(r["status"] == "done" and float(r["eval_loss"]) > 0 and float(r["train_loss"]) > 0
             for r in rows)
  md = (root / "summary.md").read_text()
  assert md.startswith("| point |") and md.count("\n") == 4
  # Rerun: nothing is retrained, the summary is rewritten.
  again = run_cli("ae_jax.sweep", *args)
  assert again.returncode == 0 and again.stdout.count("already finished") == 2


def test_print_only_prints_one_main_command_per_point_and_writes_nothing(tmp_path):
  root = tmp_path / "root"
  proc = run_cli("ae_jax.sweep", "--config=" + _config_file(tmp_path), f"--workdir={root}",
                 "--print_only", "--config.num_epochs=5")
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 2 and all(l.startswith("python -m ae_jax.main --config=") for l in lines)
  assert f"--workdir={root}/arch.latent_dim=8" in lines[1]
  assert "--config.num_epochs=5" in lines[1] and "--config.arch.latent_dim=8" in lines[1]
  assert not root.exists()


@pytest.mark.parametrize("sweep_expr,fragment", [
    ('{"no_such_key": [1, 2]}', "sweep key 'no_such_key'"),
    ('{"batch_size": ["big"]}', "sweep value batch_size='big'"),
    ('{"batch_size": [0, 64]}', "config.batch_size"),
    ("[]", "get_sweep() must return"),
    ('{"seed": []}', "non-empty list"),
])
def test_bad_sweep_is_one_error_line_and_writes_nothing(tmp_path, sweep_expr, fragment):
  root = tmp_path / "root"
  proc = run_cli("ae_jax.sweep", "--config=" + _config_file(tmp_path, sweep_expr),
                 f"--workdir={root}")
  assert_user_error(proc, fragment)
  assert not root.exists()


def test_config_without_sweep_and_unknown_point(tmp_path):
  assert_user_error(run_cli("ae_jax.sweep", "--config=configs/default.py",
                            f"--workdir={tmp_path}/r"), "defines no get_sweep()")
  proc = run_cli("ae_jax.sweep", "--config=" + _config_file(tmp_path), f"--workdir={tmp_path}/r",
                 "--point=arch.latent_dim=5")
  assert_user_error(proc, "unknown --point arch.latent_dim=5")


def test_expand_grid_and_point_names():
  points = sweep.expand({"rotation_weight": [0.0, 10.0], "arch.widths": [(16, 32)]})
  assert [sweep.point_name(p) for p in points] == [
      "rotation_weight=0.0,arch.widths=(16,32)", "rotation_weight=10.0,arch.widths=(16,32)"]
  with pytest.raises(errors.UserError, match="repeated"):
    sweep.expand([{"seed": 1}, {"seed": 1}])


@pytest.mark.parametrize("name", ["mlp", "rotation"])
def test_shipped_sweeps_build_valid_configs(name):
  import configs  # pylint: disable=import-outside-toplevel
  from ae_jax import train  # pylint: disable=import-outside-toplevel
  module = pytest.importorskip(f"configs.{name}")
  if not hasattr(module, "get_sweep"):
    pytest.skip(f"configs/{name}.py declares no sweep")
  for point in sweep.expand(module.get_sweep()):
    train.validate(sweep.apply_point(configs.load(name), point))
