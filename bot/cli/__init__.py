"""The `tuesday` command: one module per command group (`bot.cli.main:main` is the entry point)."""
