"""Hydra configs, shipped inside the package: Hydra finds them as ``pkg://cnnzoo.configs``."""
