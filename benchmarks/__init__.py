"""Speed of cnnzoo against a hand-written PyTorch loop: ``python -m benchmarks`` (see README)."""
