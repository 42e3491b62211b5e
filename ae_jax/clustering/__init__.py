"""Array-level clustering: kernel PCA → t-SNE (2-D) → KMeans, scores and the embedding plot.

    import numpy as np
    from configs import cluster
    from ae_jax.clustering import pipeline, plot
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    x = rng.normal(size=(400, 16)) + 6 * np.eye(16)[y]
    cfg = cluster.get_config()
    cfg.num_clusters = 4
    clusters, metrics, xy = pipeline.run_pipeline(x, cfg, labels=y)
    plot.embedding('/tmp/embedding.png', xy, clusters, labels=y)

Modules: `kpca` (exact RBF kernel PCA / Nyström), `tsne` (exact kNN + openTSNE),
`metrics` (Hungarian accuracy, NMI, ARI), `plot`, `pipeline` (`run_pipeline`).
The command line over a trained autoencoder is `python -m ae_jax.cluster`.
"""
