"""The fake Slack Web API of the tests is the one the local demo uses."""

from bot.demo.local_slack import LocalSlack as FakeSlack

__all__ = ["FakeSlack"]
