"""The system of record and the conversation: store, import, CLI, and (later) Slack and webhooks."""
