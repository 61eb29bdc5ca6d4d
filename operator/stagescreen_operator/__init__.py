"""StageScreen controller: reconcile decisions, kopf handlers, Job builder, local executor,
metrics and the `stagescreen` command line."""
