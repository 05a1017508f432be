"""Acting on a trained agent: its decision for the next bar (`python -m trainers.predict`)."""
