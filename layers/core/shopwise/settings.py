"""Environment variables parsed once into a typed settings object; logic never reads ``os.environ``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from shopwise import config


class SettingsError(RuntimeError):
    pass


@dataclass(frozen=True)
class Settings:
    features_table: str
    items_table: str
    lists_stem: str  # the precomputed lists' two slot tables are <stem>-a and <stem>-b
    config_table: str
    events_stream: str
    archive_bucket: str
    artifacts_bucket: str
    recommendations_ttl_days: int
    ledger_table: str = ""
    failed_events_queue_url: str = ""
    pseudonym_key_secret: str = ""
    shopper_token_secret: str = ""
    allowed_origins: tuple[str, ...] = ()
    repeat_purchase_categories: tuple[str, ...] = ()
    promotion_margin: float = config.PROMOTION_MARGIN
    stock_cache_seconds: float = 0.0
    model_package_group: str = ""  # the registry's mirror in SageMaker (``shopwise.dal.model_packages``)
    inference_image: str = ""  # the image and source a model package names for batch transform
    inference_source: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)

        def need(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise SettingsError(f"environment variable {name} is not set")
            return value

        return cls(
            features_table=need(config.FEATURES.env_var),
            items_table=need(config.ITEMS.env_var),
            lists_stem=need(config.LISTS_ENV),
            config_table=need(config.CONFIG.env_var),
            events_stream=env.get("EVENTS_STREAM", ""),
            archive_bucket=env.get("ARCHIVE_BUCKET", ""),
            artifacts_bucket=env.get("ARTIFACTS_BUCKET", ""),
            recommendations_ttl_days=int(env.get("RECOMMENDATIONS_TTL_DAYS", "7")),
            ledger_table=env.get(config.LEDGER.env_var, ""),
            failed_events_queue_url=env.get("FAILED_EVENTS_QUEUE_URL", ""),
            pseudonym_key_secret=env.get("PSEUDONYM_KEY_SECRET", ""),
            shopper_token_secret=env.get("SHOPPER_TOKEN_SECRET", ""),
            allowed_origins=tuple(o.strip() for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip()),
            repeat_purchase_categories=tuple(
                c.strip() for c in env.get("REPEAT_PURCHASE_CATEGORIES", "").split(",") if c.strip()
            ),
            promotion_margin=float(env.get("PROMOTION_MARGIN", str(config.PROMOTION_MARGIN))),
            stock_cache_seconds=float(env.get("STOCK_CACHE_SECONDS", "0")),
            model_package_group=env.get("MODEL_PACKAGE_GROUP", ""),
            inference_image=env.get("INFERENCE_IMAGE", ""),
            inference_source=env.get("INFERENCE_SOURCE", ""),
        )


def environment_variables(env: config.EnvironmentConfig, names: dict[str, str]) -> dict[str, str]:
    """The variables a function gets, from resolved resource names (used by CDK and the local runtime)."""
    return {
        config.LISTS_ENV: env.physical_name(config.LISTS),
        **names,
        "RECOMMENDATIONS_TTL_DAYS": str(env.recommendations_ttl_days),
        "REPEAT_PURCHASE_CATEGORIES": ",".join(env.repeat_purchase_categories),
        "PROMOTION_MARGIN": str(env.promotion_margin),
        "ALLOWED_ORIGINS": ",".join(env.allowed_origins),
        "STOCK_CACHE_SECONDS": f"{env.stock_cache_seconds:g}",
        "MODEL_PACKAGE_GROUP": model_package_group(env),
    }


def model_package_group(env: config.EnvironmentConfig) -> str:
    """The environment's SageMaker model package group: the registry's mirror."""
    return env.physical_name("models")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
