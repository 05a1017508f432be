"""Watching a run while it trains: rollout statistics, collapse alerts, console and TensorBoard."""
