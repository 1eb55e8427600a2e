"""Evaluation: the model card's protocol and metrics, on public benchmarks or your own data."""
