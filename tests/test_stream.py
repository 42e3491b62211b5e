"""The streaming input path: lazy rows from .npy and TFDS, the same run as in memory, the
automatic choice by size, and what it refuses."""
import json
import os

import jax
import numpy as np
import pytest

from ae_jax import checkpoint, data, errors, train
from tests.conftest import saved_state, tiny


@pytest.fixture(scope="module")
def npy_files(tmp_path_factory):
  path = tmp_path_factory.mktemp("npy")
  rng = np.random.default_rng(0)
  x = rng.random((300, 16, 16), np.float32) * 2 - 1  # [-1, 1]: scaled to [0, 1] on load
  np.save(path / "x.npy", x)
  np.save(path / "u8.npy", rng.integers(0, 256, (300, 16, 16, 3), np.uint8))
  np.save(path / "y.npy", rng.integers(0, 3, 300))
  return path, x


def test_lazy_rows_read_what_the_whole_load_holds_in_any_order(npy_files):
  path, x = npy_files
  for name in ("x.npy", "u8.npy"):
    whole = data.load(f"npy:{path / name}")
    lazy = data.load(f"npy:{path / name}", lazy=True)
    assert isinstance(lazy.images, data.Rows) and isinstance(whole.images, np.ndarray)
    assert lazy.images.shape == whole.images.shape and lazy.images.dtype == whole.images.dtype
    idx = np.array([299, 3, 3, 150, 0])
    np.testing.assert_array_equal(lazy.images[idx], whole.images[idx])
    train_l, val_l = data.split(lazy, 0.1, seed=1)
    train_w, val_w = data.split(whole, 0.1, seed=1)
    assert isinstance(train_l.images, data.Rows)  # a view: nothing read yet
    np.testing.assert_array_equal(train_l.in_memory().images, train_w.images)
    np.testing.assert_array_equal(val_l.images[[5, 1]], val_w.images[[5, 1]])
  np.testing.assert_allclose(data.load(f"npy:{path / 'x.npy'}").images[..., 0], (x + 1) / 2,
                             rtol=0, atol=1e-7)


def _run(tmp_path, name, **overrides):
  workdir = str(tmp_path / name)
  state = train.train_and_evaluate(tiny(**{"num_epochs": 2, **overrides}), workdir)
  return workdir, state


def test_a_streamed_run_computes_what_the_in_memory_run_does(tmp_path, capsys):
  # 70 steps an epoch, calls of 8: every call but an epoch's last is full, that one padded.
  memory, _ = _run(tmp_path, "memory", stream=False)
  streamed, state = _run(tmp_path, "streamed", stream=True)
  assert int(state.step) == 140
  a, _ = saved_state(memory)
  b, _ = saved_state(streamed)
  flat = lambda s: {jax.tree_util.keystr(k): np.asarray(v)  # noqa: E731
                    for k, v in jax.tree_util.tree_flatten_with_path(s)[0]}
  for k, v in flat(a).items():
    np.testing.assert_array_equal(v, flat(b)[k], err_msg=k)
  lines = lambda w: open(os.path.join(w, "metrics.jsonl")).read()  # noqa: E731
  assert lines(memory) == lines(streamed)
  mngr = checkpoint.manager(streamed, create=False)
  assert checkpoint.read_meta(mngr, 140)["data_iterator"] == {"next_index": 140}


def test_an_in_memory_run_extended_streamed_ends_as_the_in_memory_run(tmp_path):
  # The checkpoint of an in-memory run holds no iterator state: streaming seeks to its step.
  memory, _ = _run(tmp_path, "memory", num_epochs=2)
  both, _ = _run(tmp_path, "both", num_epochs=1)
  _, state = _run(tmp_path, "both", num_epochs=2, stream=True)
  assert int(state.step) == 140
  a, b = saved_state(memory)[0], saved_state(both)[0]
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_the_training_set_streams_by_itself_past_the_device_budget(tmp_path, capsys):
  # 4,500 × 784 uint8 bytes = 3.4 MB of training images against a 1 MB budget
  _, state = _run(tmp_path, "auto", stream_budget_mb=1, num_epochs=1)
  out = capsys.readouterr().out
  assert "streaming the training set from disk: its 3 MB exceed the 1 MB device budget" in out
  assert int(state.step) == 70
  _run(tmp_path, "fits", num_epochs=1)
  assert "streaming" not in capsys.readouterr().out


def test_a_npy_set_streams_with_labels_and_float_pixels(npy_files, tmp_path):
  path, _ = npy_files
  workdir, state = _run(tmp_path, "npy", stream=True, batch_size=30, num_epochs=1,
                        dataset=f"npy:{path / 'x.npy'},{path / 'y.npy'}")
  assert int(state.step) == 270 // 30
  derived = json.load(open(os.path.join(workdir, "config.json")))["derived"]
  assert derived["image_shape"] == [16, 16, 1] and derived["num_train"] == 270


def test_streaming_a_classifier_is_refused():
  config = tiny("transfer", stream=True)
  with pytest.raises(errors.UserError, match="config.stream is for autoencoders"):
    train.validate(config)
