"""Slack listeners grouped by kind; each module's register(app, ...) wires its plain functions."""
