"""The conversation in Slack: the bolt app, its listeners, the messages' blocks, roles and the feedback desk."""
