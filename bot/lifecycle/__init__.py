"""A version's life, decided in one place: retrain runs, training, the gate and its routing, shadow, sign-off, reports and status."""
