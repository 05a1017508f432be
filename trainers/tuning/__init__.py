"""The hyperparameter study behind `python -m trainers.tune`: one trial, and the study's report."""
