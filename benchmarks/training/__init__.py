"""The pieces of the training loop (``benchmarks.engine``): the step
(:mod:`.step`), where batches come from (:mod:`.data_path`), the learning-rate
schedules (:mod:`.schedule`), checkpointed RNG and optimizer state (:mod:`.state`)
and stop signals (:mod:`.signals`)."""
