"""`min_steps`: small datasets train for a number of steps rather than a fixed epoch count."""
import json
import os

from ae_jax import checkpoint, periodic, report, train
from tests.conftest import tiny


def test_min_steps_raises_the_epoch_count_only_when_it_asks_for_more():
  config = tiny(num_epochs=3, min_steps=0)
  assert periodic.num_epochs(config, steps_per_epoch=10) == 3
  config.min_steps = 25  # 25 steps at 10 a epoch: 3 epochs already cover it
  assert periodic.num_epochs(config, steps_per_epoch=10) == 3
  config.min_steps = 41
  assert periodic.num_epochs(config, steps_per_epoch=10) == 5


def test_a_run_trains_min_steps_and_records_the_epochs_it_ran(tmp_path, capsys):
  # 4,500 training images at batch 256: 17 steps an epoch, so 40 steps take 3 epochs.
  config = tiny(num_epochs=1, min_steps=40, batch_size=256, steps_per_call=32)
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 51
  assert "training 3 epochs (51 steps): min_steps=40 raises num_epochs=1" in capsys.readouterr().out
  derived = json.load(open(os.path.join(tmp_path, "config.json")))["derived"]
  assert derived["num_epochs"] == 3 and derived["total_steps"] == 51
  # Evals and saves stretch with the epochs: one each, as num_epochs=1 would give.
  assert periodic.epoch_cadence(config, 3) == (3, 3)
  assert [m["step"] for m in report.read_metrics(str(tmp_path)) if "eval_loss" in m] == [51]
  assert checkpoint.steps(checkpoint.manager(str(tmp_path), create=False)) == [51]
  train.train_and_evaluate(config, str(tmp_path))
  assert "already finished at step 51 (3 epochs)" in capsys.readouterr().out
