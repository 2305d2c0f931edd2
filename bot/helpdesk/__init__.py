"""Helpdesk write-backs: the adapters (one class per helpdesk), the outbox and its delivery."""
