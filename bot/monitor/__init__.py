"""How the served model is doing, from the store: measures, drift, live label frequencies, alerts, the digest, /metrics and the dashboard's pages."""
