"""How the served model is doing, from the store: measures, drift, live label priors, alerts, digest, /metrics, pages."""
