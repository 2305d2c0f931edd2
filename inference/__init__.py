"""The shared base: task spec, prompt format, model registry and predictors."""
