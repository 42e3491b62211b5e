"""Transfer: stratified disjoint splits, encoder-subtree restore, a tiny fit beats chance."""
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
  x = data.load("mnist_5k").images[:4]
  z_ae = ae.apply(ae_vars, x, method="encode")
  z_clf = model.apply(v, x, method=lambda m, x: m.ae.encode(x))
  np.testing.assert_array_equal(np.asarray(z_ae), np.asarray(z_clf))


def test_tiny_fits_beat_chance_and_frozen_keeps_the_encoder(tmp_path, ae_run):
  scratch = transfer.train_and_evaluate(_config(), str(tmp_path / "s"))
  assert scratch["test_acc"] > 0.4 and scratch["num_params"] == 784 * 32 + 32 + 32 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
  frozen = transfer.train_and_evaluate(
      _config(mode="frozen", pretrained_workdir=ae_run, num_epochs=40, learning_rate=3e-3),
      str(tmp_path / "f"))
  assert frozen["test_acc"] > 0.2  # chance is 0.1
  saved = checkpoint.load_for_inference  # the frozen encoder equals the AE's encoder
  _, _, ae_vars, _ = saved(ae_run)
  mngr = checkpoint.manager(str(tmp_path / "f"), create=False)
  restored = mngr.restore(mngr.latest_step())["state"]
  for a, b in zip(jax.tree_util.tree_leaves(restored["params"]["ae"]["encoder"]),
                  jax.tree_util.tree_leaves(ae_vars["params"]["encoder"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_pretrained_workdir_is_an_error(tmp_path, ae_run):
  proc = run_cli("ae_jax.main", "--config=configs/transfer.py", f"--workdir={tmp_path / 'a'}",
                 "--config.mode=finetune", f"--config.pretrained_workdir={tmp_path / 'missing'}")
  assert_user_error(proc, "missing")
  proc = run_cli("ae_jax.main", "--config=configs/transfer.py", f"--workdir={tmp_path / 'b'}",
                 "--config.mode=finetune", f"--config.pretrained_workdir={ae_run}")
  assert_user_error(proc, "does not fit")
