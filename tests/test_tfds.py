"""TFDS catalog datasets through the real loader (`data.load('mnist')` …), offline: TFDS's
own `tfds.testing.mock_data` stands in for the prepared array_record files."""
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.data_sources import base as tfds_sources

from ae_jax import data, train
from tests.conftest import tiny

# (image shape, first class name); cifar10's names are read from its downloaded files when
# it is prepared, which the mock skips, so there its ClassLabel holds '0'…'9'.
CASES = {"mnist": ((28, 28, 1), "0"), "fashion_mnist": ((28, 28, 1), "T-shirt/top"),
         "cifar10": ((32, 32, 3), "0")}
N = 200


@pytest.fixture
def mocked(monkeypatch):
  """mock_data, with its data source's batch read made per record: the mock sets
  `__getitems__` as a plain attribute, so it is called without `self` (TFDS 4.9)."""
  monkeypatch.setattr(tfds_sources.BaseDataSource, "__getitems__",
                      lambda self, keys: [self[k] for k in keys])
  with tfds.testing.mock_data(num_examples=N, policy=tfds.testing.MockPolicy.USE_CODE):
    yield


@pytest.mark.parametrize("stream", [False, True], ids=["in_memory", "streamed"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_catalog_dataset_loads_and_trains_an_epoch(name, stream, mocked, tmp_path):
  shape, first_class = CASES[name]
  ds = data.load(name, str(tmp_path / "tfds"))
  assert ds.images.shape == (N, *shape) and ds.images.dtype == np.uint8  # as TFDS stores them
  assert 0 <= ds.images.min() < ds.images.max() <= 255
  assert ds.labels.shape == (N,) and ds.labels.dtype == np.int32
  assert 0 <= ds.labels.min() and ds.labels.max() < 10 and ds.num_classes == 10
  names = tfds.builder(name, data_dir=str(tmp_path / "tfds")).info.features["label"].names
  assert ds.class_names == names and len(names) == 10 and names[0] == first_class
  assert ds.name == name
  lazy = data.load(name, str(tmp_path / "tfds"), lazy=True)  # the streaming path's source
  assert isinstance(lazy.images, data.Rows) and lazy.images.shape == ds.images.shape
  np.testing.assert_array_equal(lazy.images[[7, 0, 199]], ds.images[[7, 0, 199]])
  np.testing.assert_array_equal(lazy.labels, ds.labels)
  workdir = str(tmp_path / "run")
  state = train.train_and_evaluate(
      tiny(dataset=name, data_dir=str(tmp_path / "tfds"), batch_size=36, val_fraction=0.1,
           stream=stream),
      workdir)
  assert int(state.step) == (N - 20) // 36 == 5
  saved = json.load(open(os.path.join(workdir, "config.json")))["derived"]
  assert saved["image_shape"] == list(shape) and saved["num_train"] == N - 20
  assert saved["class_names"][0] == first_class
  assert os.path.isfile(os.path.join(workdir, "plots", "reconstructions.png"))
