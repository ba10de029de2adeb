"""Training: the trainer, batches, CoRe and Kalman-filter optimisers, lifelong adaptive data selection."""
