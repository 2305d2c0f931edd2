"""Helpdesk write-back: adapters that write a decision onto a ticket, and the outbox that delivers it.

adapters  one class per helpdesk (Zendesk today), and the errors an attempt can end in
outbox    the SQL table of write-backs (pending, delivered, failed) and its state changes
delivery  the queued job that makes one attempt, and the sweep that re-queues what Redis lost
"""

from bot.helpdesk.adapters import (HelpdeskAdapter, HelpdeskError, HelpdeskRefused, ZendeskAdapter, adapter_for,
                                   decision_note, label_tag, parse_retry_after, ticket_link, writes_back)
from bot.helpdesk.delivery import (DELIVER_JOB, deliver, deliver_job, delivery_job_id, enqueue_delivery, sweep_outbox,
                                   write_back_job)
from bot.helpdesk.outbox import (DELIVERED, FAILED, PENDING, RetryPolicy, WriteBack, failed_write_backs, outbox_counts,
                                 recording_outbox, retry_failed, write_back_for)

__all__ = ["DELIVERED", "DELIVER_JOB", "FAILED", "PENDING", "HelpdeskAdapter", "HelpdeskError", "HelpdeskRefused",
           "RetryPolicy", "WriteBack", "ZendeskAdapter", "adapter_for", "decision_note", "deliver", "deliver_job",
           "delivery_job_id", "enqueue_delivery", "failed_write_backs", "label_tag", "outbox_counts",
           "parse_retry_after", "recording_outbox", "retry_failed", "sweep_outbox", "ticket_link",
           "write_back_for", "write_back_job", "writes_back"]
