"""Hydra configs, shipped with the package (the repo keeps them at the top-level conf/)."""
