"""Training and clustering configs; `load` gives one with overrides applied.

    import configs
    c = configs.load("mlp", num_epochs=2, **{"arch.latent_dim": 16})
"""
import importlib


def load(name, **overrides):
  """configs/NAME.py's `get_config()` with `overrides` (nested keys as 'a.b')."""
  config = importlib.import_module(f"configs.{name}").get_config()
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config
