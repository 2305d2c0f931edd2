"""A version's life, decided in one place: retrains, training, the one gate-and-route, shadow, sign-off, reports, status."""
