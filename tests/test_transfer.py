"""Transfer: stratified disjoint splits, encoder-subtree restore, a tiny fit beats chance."""
import json
import os
import re

import jax
import numpy as np
import pytest

from ae_jax import checkpoint, data, errors, train, transfer
import configs
from tests.conftest import assert_user_error, run_cli, tiny


def test_labelled_split_sizes_strata_and_disjointness():
  labels = np.repeat(np.arange(10), 50)
  s = transfer.labelled_split(labels, 100, seed=0)
  assert [len(s[k]) for k in ("train", "val", "test")] == [100, 100, 100]
  assert len(s["unlabelled"]) == 200
  sets = [set(s[k].tolist()) for k in ("train", "val", "test", "unlabelled")]
  assert sum(len(x) for x in sets) == len(set().union(*sets)) == 500  # disjoint, covering
  for k in ("train", "val", "test"):
    assert np.bincount(labels[s[k]]).tolist() == [10] * 10
  again = transfer.labelled_split(labels, 100, seed=0)
  assert all(np.array_equal(s[k], again[k]) for k in s)
  assert not np.array_equal(s["train"], transfer.labelled_split(labels, 100, seed=1)["train"])
  with pytest.raises(errors.UserError, match="multiple"):
    transfer.labelled_split(labels, 95, seed=0)


def test_labelled_pool_is_fixed_across_seeds_and_outside_unlabelled():
  labels = np.repeat(np.arange(10), 50)
  a, b = (transfer.labelled_split(labels, 100, seed=s, pool=400) for s in (0, 1))
  np.testing.assert_array_equal(a["unlabelled"], b["unlabelled"])
  assert len(a["unlabelled"]) == 100
  assert not np.array_equal(a["test"], b["test"])
  for s in (a, b):
    labelled = np.concatenate([s["train"], s["val"], s["test"]])
    assert len(set(labelled.tolist())) == 300 and not set(labelled) & set(s["unlabelled"])


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ae"))
  train.train_and_evaluate(tiny("mlp", **{"arch.hidden": (32,), "arch.latent_dim": 16,
                                          "arch.latent_relu": False}), workdir)
  return workdir


def _config(**kw):
  return configs.load("transfer", **{"arch.hidden": (32,), "arch.latent_dim": 16, "head": (16,),
                                   "num_epochs": 15, "labels_per_split": 50, **kw})


def test_restored_encoder_matches_the_autoencoders(ae_run):
  config = _config(mode="finetune", pretrained_workdir=ae_run)
  model = transfer.build(config, (28, 28, 1), 10)
  v = model.init({"params": jax.random.PRNGKey(1)}, np.zeros((1, 28, 28, 1)), train=False)
  v, _ = transfer.load_pretrained(v, ae_run)
  _, ae, ae_vars, _ = checkpoint.load_for_inference(ae_run)
  x = data.as_unit(data.load("mnist_5k").images[:4])
  z_ae = ae.apply(ae_vars, x, method="encode")
  z_clf = model.apply(v, x, method=lambda m, x: m.ae.encode(x))
  np.testing.assert_array_equal(np.asarray(z_ae), np.asarray(z_clf))


def _fit(config, workdir):
  """Trains the classifier through the one training loop; returns its result.json."""
  train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, transfer.RESULT)) as f:
    return json.load(f)


def test_tiny_fits_beat_chance_and_frozen_keeps_the_encoder(tmp_path, ae_run):
  scratch = _fit(_config(), str(tmp_path / "s"))
  assert scratch["test_acc"] > 0.4 and scratch["num_params"] == 784 * 32 + 32 + 32 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
  config = checkpoint.read_config(str(tmp_path / "s"))
  assert config.task == "classify" and config.derived.num_classes == 10  # the AE workdir format
  frozen = _fit(_config(mode="frozen", pretrained_workdir=ae_run, num_epochs=40, learning_rate=1e-2),
                str(tmp_path / "f"))
  assert frozen["test_acc"] > 0.2  # chance is 0.1
  _, _, ae_vars, _ = checkpoint.load_for_inference(ae_run)  # the frozen encoder is the AE's
  _, best, _ = transfer.best_variables(str(tmp_path / "f"))
  for a, b in zip(jax.tree_util.tree_leaves(best["params"]["ae"]["encoder"]),
                  jax.tree_util.tree_leaves(ae_vars["params"]["encoder"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _eval_lines(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if "eval_acc" in r]


def test_fit_in_one_call_keeps_the_same_best_state_as_a_call_per_epoch(tmp_path):
  config = dict(augment=True, num_epochs=30, learning_rate=3e-3)  # the best epoch: 17 of 30
  one_call = _fit(_config(**config), str(tmp_path / "one"))
  per_epoch = _fit(_config(**config, steps_per_call=1000, **{"eval.in_call": False}),
                   str(tmp_path / "per_epoch"))
  assert one_call == per_epoch and 1 < one_call["best_epoch"] < 30
  _, a, _ = transfer.best_variables(str(tmp_path / "one"))
  _, b, _ = transfer.best_variables(str(tmp_path / "per_epoch"))
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
  assert len(_eval_lines(str(tmp_path / "per_epoch"))) == 30  # a host eval every epoch
  assert len(_eval_lines(str(tmp_path / "one"))) == 1  # one call: one eval line, at its end


def test_in_call_eval_is_for_classifiers_only(tmp_path):
  proc = run_cli("ae_jax.main", "--config=configs/mlp.py", f"--workdir={tmp_path / 'a'}",
                 "--config.eval.in_call=True")
  assert_user_error(proc, "needs task='classify'")
  assert not os.path.exists(tmp_path / "a" / "config.json")


def test_self_training_round_and_resume_of_a_finished_run(tmp_path, capsys):
  workdir = str(tmp_path / "st")
  config = _config(num_epochs=6, **{"self_train.rounds": 1, "self_train.per_class": 5})
  first = _fit(config, workdir)
  added = re.search(r"self-training round 1: (\d+) training labels", capsys.readouterr().out)
  assert added and 50 < int(added[1]) <= 50 + 10 * 5  # ≤ 5 pseudo-labels per predicted class
  assert os.path.isdir(os.path.join(workdir, "round1", "best"))
  assert _fit(config, workdir) == first  # a finished run is not retrained
  assert "nothing to train" in capsys.readouterr().out


def test_bad_pretrained_workdir_is_an_error(tmp_path, ae_run):
  proc = run_cli("ae_jax.main", "--config=configs/transfer.py", f"--workdir={tmp_path / 'a'}",
                 "--config.mode=finetune", f"--config.pretrained_workdir={tmp_path / 'missing'}")
  assert_user_error(proc, "missing")
  proc = run_cli("ae_jax.main", "--config=configs/transfer.py", f"--workdir={tmp_path / 'b'}",
                 "--config.mode=finetune", f"--config.pretrained_workdir={ae_run}")
  assert_user_error(proc, "does not fit")
