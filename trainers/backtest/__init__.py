"""Trading a policy over a whole split and judging it: simulation, metrics, baselines, validation, best-k, selection bias, reports."""
