"""The client side: plan each stage's tasks, run them on a backend, chain stages, record the run."""
