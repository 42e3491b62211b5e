"""Data layer: mnist_5k through TFDS, npy specs, validation, seeded batching."""
import numpy as np
import pytest

from ae_jax import data, errors, pixels


@pytest.fixture(scope="module")
def mnist():
  return data.load("mnist_5k")


def test_mnist_5k_shape_and_labels(mnist):
  assert mnist.images.shape == (5000, 28, 28, 1)
  assert mnist.images.dtype == np.uint8  # kept as stored; floats only inside the jitted steps
  assert mnist.images.min() == 0 and mnist.images.max() == 255
  unit = data.as_unit(mnist.images)
  assert unit.dtype == np.float32 and unit.max() == 1.0
  assert sorted(set(mnist.labels.tolist())) == list(range(10))
  assert mnist.num_classes == 10


def test_mnist_5k_reads_the_same_records_twice(mnist):
  again = data.load("mnist_5k")
  np.testing.assert_array_equal(again.images, mnist.images)
  np.testing.assert_array_equal(again.labels, mnist.labels)


def test_split_is_seeded_and_disjoint(mnist):
  tr, va = data.split(mnist, 0.1, seed=0)
  assert (len(tr), len(va)) == (4500, 500)
  tr2, va2 = data.split(mnist, 0.1, seed=0)
  np.testing.assert_array_equal(va.labels, va2.labels)
  _, va3 = data.split(mnist, 0.1, seed=1)
  assert not np.array_equal(va.images, va3.images)


def test_batches_identical_for_same_seed_and_cover_epoch():
  import jax
  key = jax.random.PRNGKey(3)
  batch = lambda key, s: np.asarray(data.epoch_batch(  # noqa: E731
      data.step_permutation(key, s, n=100, batch_size=10), s, batch_size=10))
  a = [batch(key, s) for s in range(10)]
  b = [batch(key, s) for s in range(10)]
  np.testing.assert_array_equal(a, b)
  assert sorted(np.concatenate(a).tolist()) == list(range(100))  # one epoch = a permutation
  nxt = batch(key, 10)
  assert not np.array_equal(nxt, a[0])  # the next epoch is reshuffled
  other = batch(jax.random.PRNGKey(4), 0)
  assert not np.array_equal(other, a[0])


def test_npy_round_trip_uint8_and_labels(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
  y = rng.integers(0, 3, 12)
  np.save(tmp_path / "x.npy", x)
  np.save(tmp_path / "y.npy", y)
  ds = data.load(f"npy:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}")
  assert ds.images.shape == (12, 8, 8, 1)
  np.testing.assert_array_equal(ds.images[..., 0], x)  # uint8 stays uint8
  np.testing.assert_array_equal(ds.labels, y)


def test_npy_float_ranges(tmp_path):
  x = np.linspace(-1, 1, 2 * 6 * 6 * 3, dtype=np.float32).reshape(2, 6, 6, 3)
  np.save(tmp_path / "x.npy", x)
  ds = data.load(f"npy:{tmp_path / 'x.npy'}")
  np.testing.assert_allclose(ds.images, (x + 1) / 2, atol=1e-6)
  np.testing.assert_allclose(pixels.SIGNED.to_model(ds.images), x, atol=1e-6)


@pytest.mark.parametrize("array,labels,fragment", [
    (np.zeros((5, 784)), None, "N×H×W"),
    (np.zeros((2, 3, 8, 8, 1)), None, "N×H×W"),
    (np.full((3, 8, 8), np.nan, np.float32), None, "NaN"),
    (np.zeros((3, 8, 8)), np.zeros(4, int), "vector of 3"),
    (np.full((3, 8, 8), 300.0), None, "pixel values"),
])
def test_bad_npy_is_a_user_error(tmp_path, array, labels, fragment):
  np.save(tmp_path / "x.npy", array)
  spec = f"npy:{tmp_path / 'x.npy'}"
  if labels is not None:
    np.save(tmp_path / "y.npy", labels)
    spec += f",{tmp_path / 'y.npy'}"
  with pytest.raises(errors.UserError, match=fragment):
    data.load(spec)


def test_missing_file_and_unknown_dataset(tmp_path):
  with pytest.raises(errors.UserError, match="not found"):
    data.load(f"npy:{tmp_path / 'missing.npy'}")
  with pytest.raises(errors.UserError, match="cannot load TFDS dataset 'no_such_dataset_xyz'"):
    data.load("no_such_dataset_xyz", str(tmp_path))
