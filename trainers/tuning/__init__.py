"""The hyperparameter study behind `python -m trainers.tune`: one trial, the study, and its report."""
