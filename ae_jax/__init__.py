"""ae_jax: functional JAX/Flax autoencoders, their training, and a clustering pipeline.

    python -m ae_jax.main --config=configs/rotation.py --workdir=/tmp/rot
    python -m ae_jax.cluster --config=configs/cluster.py --workdir=/tmp/rot
"""
