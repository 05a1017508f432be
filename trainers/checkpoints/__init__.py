"""A run directory's checkpoints, the room both training (trainers.run) and backtesting
(trainers.backtest) read them through: the file format, listing and pruning (`files`), which one a
command loads (`choice`), resuming past damaged files (`recovery`) and the best-k list by
validation score (`best_k`). Import the package (`from trainers import checkpoints`) and use the
names below."""
from trainers.checkpoints.choice import CHOICE_HELP, DEFAULT_CHOICE, choose, choose_members, load_policy
from trainers.checkpoints.files import (AVERAGE, CORRUPT_SUFFIX, KEEP_LAST, Checkpoint, ResumeError, at_step,
                                        average_of_best, best, checkpoint_dir, latest, load_state, load_weights,
                                        rng_state, save, set_rng_state)
from trainers.checkpoints.recovery import resume_point

__all__ = ["AVERAGE", "CHOICE_HELP", "CORRUPT_SUFFIX", "Checkpoint", "DEFAULT_CHOICE", "KEEP_LAST", "ResumeError",
           "at_step", "average_of_best", "best", "checkpoint_dir", "choose", "choose_members", "latest", "load_policy",
           "load_state", "load_weights", "resume_point", "rng_state", "save", "set_rng_state"]
