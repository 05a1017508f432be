"""Walk-forward evaluation behind `python -m trainers.walkforward`: an ordinary training run per
fold and seed (runs), their test windows stitched into out-of-sample curves with intervals over
seeds and folds (stitch), and the report (report)."""
