"""Training: one loop for every task (fine-tuning and pretraining), optimizers, schedules, checkpoints."""
