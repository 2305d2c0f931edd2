"""The demos: the model pipeline, the online loop, three hosts on one machine, and a local Slack stand-in."""
