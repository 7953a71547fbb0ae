"""cnnzoo's Hydra sweeper on current Optuna: ``hydra/sweeper=cnnzoo_optuna`` (see the README)."""
