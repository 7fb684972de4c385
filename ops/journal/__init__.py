"""The run journal: what was intended, what was done, and what came of it."""

from ops.journal.store import HostStep, Journal, Run, open_journal

__all__ = ["HostStep", "Journal", "Run", "open_journal"]
