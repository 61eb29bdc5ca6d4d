"""Running a study on one machine: trainer subprocesses, the study's store, the controller."""
