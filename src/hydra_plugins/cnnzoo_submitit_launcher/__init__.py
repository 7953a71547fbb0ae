"""Hydra's submitit launchers whose requeued jobs resume: ``hydra/launcher=slurm|local``."""
