"""One training run: its config from the command line, the live session, the loop, checkpoints and resume, transfer, data-parallel."""
