"""Clustering pipeline: encode with the AE in the workdir (or take an N×D .npy), then
kernel PCA → t-SNE (2-D) → KMeans.

    python -m ae_jax.cluster --config=configs/cluster.py --workdir=/tmp/mlp
    python -m ae_jax.cluster --config=configs/cluster.py --workdir=/tmp/c \
        --config.embeddings=z.npy --config.labels=y.npy --config.num_clusters=10
"""
import ml_collections


def get_config():
  """The clustering config: kernel PCA to 50-D, t-SNE to 2-D, KMeans into 10 clusters."""
  c = ml_collections.ConfigDict()
  # Input: '' = the dataset the AE in the workdir was trained on (its config.json).
  c.dataset = ""
  c.data_dir = ""  # TFDS data dir; '' = the training run's
  c.split = "train"
  c.embeddings = ""  # N×D .npy to cluster instead of encoding (no AE needed)
  c.labels = ""  # N integer labels .npy for scoring ('' = the dataset's labels, if any)
  c.max_points = 0  # > 0: cluster a seeded subsample of this many points
  c.num_clusters = 10
  c.seed = 0

  # Encoder (when not given embeddings).
  c.checkpoint_step = -1  # -1 = newest
  c.all_checkpoints = False  # per kept checkpoint: train MSE and val clustering accuracy
  c.batch_size = 1000  # encoding batch (fixed size, jitted)

  c.kpca = ml_collections.ConfigDict()
  c.kpca.n_components = 50  # 0 = skip kernel PCA
  c.kpca.gamma = 0.0  # RBF gamma; <= 0: median heuristic 1 / (2 · median |x - y|²)
  c.kpca.exact_max_n = 6000  # exact (n×n kernel) up to here, Nyström above
  c.kpca.landmarks = 1000  # Nyström landmarks
  c.kpca.eigen_solver = "auto"  # exact method: auto | dense | randomized

  c.tsne = ml_collections.ConfigDict()
  # Below openTSNE's 30: tighter neighbourhoods, better clusters and faster on mnist_5k;
  # experiments/README.md#clustering-speed-bench_clusterpy-and-quality-cluster_mnistpy.
  c.tsne.perplexity = 15.0
  c.tsne.early_exaggeration_iter = 125
  c.tsne.early_exaggeration = 12.0
  c.tsne.n_iter = 250
  c.tsne.exaggeration = 2.0  # > 1 compacts clusters, which suits KMeans
  c.tsne.learning_rate = 0.0  # <= 0: openTSNE's auto, n / exaggeration
  c.tsne.init = "pca"  # pca | random | spectral
  c.tsne.method = "auto"  # auto (bh up to bh_max_n, fft above) | bh | fft
  c.tsne.bh_max_n = 1500  # FFT's gradient is faster from about here up (README section above)
  # Degrees of freedom of the t kernel; < 1: heavier tails, more separated clusters;
  # experiments/README.md#clustering-speed-bench_clusterpy-and-quality-cluster_mnistpy.
  c.tsne.dof = 0.5
  c.tsne.n_jobs = 0  # threads; 0 = all cores for kNN and FFT, one for Barnes-Hut
  # Above max_n points t-SNE is fitted on a seeded subsample of max_n and every other point
  # is placed at the median of its place_k nearest fitted points (0 = fit all).
  c.tsne.max_n = 100_000
  c.tsne.place_k = 10

  c.kmeans = ml_collections.ConfigDict()
  c.kmeans.n_init = 10
  return c
