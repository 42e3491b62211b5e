"""An MLP autoencoder built for clustering its embeddings: 784-500-500-2000-32 (linear
bottleneck) and back, trained on randomly rotated (±8°) and shifted (±1.5 px) inputs with
the clean image as target, so the encoder learns to ignore small pose changes.

How well its embeddings cluster (configs/cluster.py) against raw pixels and report 004's
8-D ReLU bottleneck, from experiments/cluster_mnist.py:
experiments/README.md#clustering-speed-bench_clusterpy-and-quality-cluster_mnistpy.

    python -m ae_jax.main --config=configs/mlp_cluster.py --workdir=runs/mlp_cluster
    python -m ae_jax.cluster --config=configs/cluster.py --workdir=runs/mlp_cluster
"""
from configs import mlp


def get_config():
  """The clustering MLP AE's training config (mlp.py widened, linear 32-D bottleneck)."""
  c = mlp.get_config()
  c.arch.hidden = (500, 500, 2000)
  c.arch.latent_dim = 32
  c.arch.latent_relu = False
  c.pose_augment.max_degrees = 8.0
  c.pose_augment.max_shift = 1.5
  c.plateau.patience = 0
  c.batch_size = 256
  c.num_epochs = 100
  return c


def get_sweep():
  """Pose augmentation on/off: python -m ae_jax.sweep --config=configs/mlp_cluster.py --workdir=R"""
  return [{"pose_augment.max_degrees": 0.0, "pose_augment.max_shift": 0.0},
          {"pose_augment.max_degrees": 8.0, "pose_augment.max_shift": 1.5}]
