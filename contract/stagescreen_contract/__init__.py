"""The run contract between the trainer and the core, in one dependency-free package (pure
Python and pydantic) installed in both images: the trainer's variables and what it accepts
(`variables`, `checks`), how a run's status and exit codes read (`status`), and the record a
run leaves, `result.json` (`record`). Both sides import it; neither copies it."""
