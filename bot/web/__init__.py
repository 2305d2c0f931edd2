"""The HTTP door: the FastAPI app (webhooks, Slack requests, health, metrics) and the dashboard routes."""
