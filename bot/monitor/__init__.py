"""How the served model is doing, from the store: measures and drift (bot.monitor.measures), read
by the dashboard, /metrics, the channel's alerts and `/tuesday health`.

Every measure is a function of (runtime, since, until): SQL aggregates over a bounded window, so
they answer in well under a second on a store of 100,000 tickets (docs/monitoring.md).
"""
