"""Settings: command-line flags win over ``ARIS_*`` environment variables, which win over the file.

The file is ``~/.config/aris/config.toml`` (or ``$ARIS_CONFIG``); its keys are the field names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from aris.pacs.settings import NodeSettings, PacsConnection


def config_path() -> Path:
    return Path(os.environ.get("ARIS_CONFIG", Path.home() / ".config" / "aris" / "config.toml"))


def default_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "aris"


class ArisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARIS_", extra="ignore")

    home: Path = Field(
        default_factory=default_home,
        description="Where Aris keeps models, jobs and the store.",
        json_schema_extra={"cli": False},
    )
    engine: str = Field(
        default="transformers",
        description="Which engine runs the model: transformers, llamacpp, openai or a plugin's.",
    )
    model: str | None = Field(
        default=None,
        description="HF id, local folder, GGUF file, or the served model name for openai.",
        json_schema_extra={"short": "-m"},
    )
    mmproj: str | None = Field(
        default=None, description="GGUF vision projector (mmproj-*.gguf) for llamacpp."
    )
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."
    )
    api_key: SecretStr | None = Field(default=None, description="Key for the OpenAI-compatible server.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="transformers device.")
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = Field(
        default="auto", description="auto: bf16 on CUDA, float32 on CPU. float16 is refused (Gemma 3 breaks)."
    )
    quantization: Literal["none", "4bit"] = Field(
        default="none", description="4bit: NF4 via bitsandbytes (CUDA)."
    )
    adapter: str | None = Field(
        default=None, description="A LoRA adapter folder to load over the base model."
    )
    n_ctx: int = Field(default=8192, ge=512, description="llama.cpp context; CT/MRI volumes need >= 32768.")
    n_threads: int | None = Field(default=None, ge=1, description="llama.cpp CPU threads.")
    timeout: float = Field(
        default=600.0, gt=0, description="Seconds before an HTTP request to a server gives up."
    )
    max_retries: int = Field(default=3, ge=0, description="Retries on 429/5xx with exponential backoff.")
    concurrency: int = Field(
        default=64,
        ge=1,
        description="openai: requests in flight to the server at once (a batching server such as vLLM "
        "runs them together; one that does not queues them).",
    )
    max_new_tokens: int = Field(
        default=1024, ge=1, description="Longest reply (default: the task's own, e.g. 2048 for lab-extract)."
    )
    embed_engine: Literal["transformers", "openai"] = Field(
        default="transformers",
        description="MedSigLIP embeddings: transformers (local) or openai (a /v1/embeddings server).",
    )
    embed_model: str = Field(
        default="google/medsiglip-448",
        description="MedSigLIP model: HF id on this machine, local folder, or the served name for openai.",
    )
    embed_base_url: str | None = Field(
        default=None, description="OpenAI-compatible embeddings server, e.g. http://127.0.0.1:8765/v1."
    )
    embed_api_key: SecretStr | None = Field(default=None, description="Key for the embeddings server.")
    embed_batch_size: int = Field(default=8, ge=1, description="Images per MedSigLIP forward pass.")
    embed_index_backend: Literal["faiss", "sqlite-vec", "qdrant"] = Field(
        default="faiss", description="Image-search index: faiss or sqlite-vec (embedded) or qdrant."
    )
    embed_qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL for --embed-index-backend qdrant (default: local files)."
    )
    embed_label_sets: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Your own zero-shot label sets (config file: [embed_label_sets] name = [...]).",
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="Settings a plugin engine reads, KEY=VALUE (repeat the flag)."
    )
    pacs: dict[str, PacsConnection] = Field(
        default_factory=dict,
        description="Named PACS connections ([pacs.NAME] tables; dicomweb://NAME/... URLs).",
        json_schema_extra={"cli": False},
    )
    node: NodeSettings = Field(
        default_factory=NodeSettings,
        description="The DICOM node ([node] table): AE title, port, routing rules.",
        json_schema_extra={"cli": False},
    )
    asr_model: str = Field(
        default="google/medasr",
        description="Speech model (MedASR): HF id already on this machine (aris pull) or a local folder.",
    )
    asr_lm: str | None = Field(
        default=None,
        description="KenLM file for ASR beam search ('auto': lm_6.kenlm beside MedASR); unset: greedy.",
    )
    asr_beam_width: int = Field(default=8, ge=1, description="ASR beam width with --asr-lm (Google: 8).")
    asr_max_seconds: float = Field(
        default=3600.0, gt=0, description="Longest recording the speech model accepts, in seconds."
    )

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        from aris.engines import ENGINES

        if value not in ENGINES:
            raise ValueError(f"unknown engine {value!r}; choose one of {', '.join(ENGINES.names())}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_path()))

    @classmethod
    def from_flags(cls, **flags: Any) -> ArisSettings:
        """Settings with the given flags on top; ``None`` means 'flag not given'.

        A bad value (from a flag, ``ARIS_*`` or the file) is a ``ConfigError`` naming the setting.
        """
        from pydantic import ValidationError

        from aris.errors import ConfigError

        try:
            return cls(**{k: v for k, v in flags.items() if v is not None})
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in err['loc']) or 'settings'}: {err['msg'].removeprefix('Value error, ')}"
                for err in e.errors()
            )
            raise ConfigError(f"invalid setting: {problems}") from None

    @property
    def models_dir(self) -> Path:
        return self.home / "models"
