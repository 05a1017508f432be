"""Supervised pretraining on the env's own inputs (`python -m trainers.pretrain`, docs/supervised.md).

`data` builds every bar's observation with the env (`VecTradingEnv.decision_inputs`) and its label,
`models` holds the small models and the encoder with a prediction head, `fit` trains one with early
stopping, `causal` plans the walk-forward refits, makes the causal `sl_prob_*` columns and writes
the parquet copies, `metrics` scores probabilities (numpy only), `report` backtests the signals in
the env and prints / writes the report, `pipeline` runs it all.
"""
