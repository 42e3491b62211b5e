"""End to end: an MLP autoencoder's embedding separates two synthetic classes that raw pixels do not."""
import numpy as np

import configs
from ae_jax import checkpoint, data, inference, train
from ae_jax.clustering import pipeline
from tests.conftest import tiny


def twin_backgrounds(seed, pairs=200, side=16, amp=0.4, salt=60):
  """(images N×side×side in [0, 1], labels N), N = 2·pairs.

  Class 0 is dim horizontal stripes (even rows at `amp`), class 1 dim vertical stripes,
  on black. Each image is then covered by a random background of `salt` white pixels, and
  every background is used twice: once under each class. In pixel space an image's nearest
  neighbour is therefore its other-class twin, far closer than any image of its own class.
  """
  rng = np.random.default_rng(seed)
  d = side * side
  r, c = np.mgrid[:side, :side]
  templates_2D = amp * np.stack([r % 2 == 0, c % 2 == 0]).reshape(2, d).astype(np.float32)
  salt_PS = np.argsort(rng.random((pairs, d)), axis=1)[:, :salt]
  background_PD = np.zeros((pairs, d), bool)
  np.put_along_axis(background_PD, salt_PS, True, axis=1)
  perm_N = rng.permutation(2 * pairs)
  labels_N = np.tile([0, 1], pairs)[perm_N]
  pair_N = np.repeat(np.arange(pairs), 2)[perm_N]
  images_ND = templates_2D[labels_N]
  images_ND[background_PD[pair_N]] = 1.0
  return images_ND.reshape(-1, side, side), labels_N


def test_embedding_separates_classes_that_raw_pixels_do_not(tmp_path):
  """The data shares each random background between the two classes, so raw-pixel
  neighbourhoods pair images across classes and clustering them is at chance; a 2-D
  bottleneck cannot memorise 200 random backgrounds and keeps the one factor shared by
  many images, the stripe orientation. Same clustering config (configs/cluster.py) for both."""
  images_NHW, labels_N = twin_backgrounds(seed=0)
  np.save(tmp_path / "X.npy", images_NHW)
  np.save(tmp_path / "y.npy", labels_N)
  spec = f"npy:{tmp_path / 'X.npy'},{tmp_path / 'y.npy'}"
  # 360 training images: min_steps=110 gives 10 epochs of 11 steps, one eval and one save.
  config = tiny("mlp", dataset=spec, min_steps=110, batch_size=32,
                **{"arch.latent_dim": 2, "arch.latent_relu": False})
  workdir = str(tmp_path / "mlp")
  train.train_and_evaluate(config, workdir)

  ds = data.load(spec)
  _, model, variables, _ = checkpoint.load_for_inference(workdir)
  z_ND = inference.encode(model, variables, ds.images)
  cfg = configs.load("cluster", num_clusters=2)
  _, raw, _ = pipeline.run_pipeline(ds.images.reshape(len(ds.images), -1), cfg, ds.labels)
  _, emb, _ = pipeline.run_pipeline(z_ND, cfg, ds.labels)
  print(f"raw pixels ACC {raw['acc']:.3f} NMI {raw['nmi']:.3f}; "
        f"AE embedding ACC {emb['acc']:.3f} NMI {emb['nmi']:.3f}")
  assert raw["acc"] <= 0.6, raw
  assert emb["acc"] >= 0.9, emb
