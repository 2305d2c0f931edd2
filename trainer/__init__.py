"""The training pipeline: dataset snapshot + task + base model + config in, model version out."""
