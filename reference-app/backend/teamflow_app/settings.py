"""Settings from the environment (the plan's variables), read once per process."""

import os
from dataclasses import dataclass


def _env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"environment variable {name} is not set")
    return value


@dataclass(frozen=True)
class Settings:
    environment: str
    debug: bool
    api_v1_str: str
    project_name: str
    database_url: str
    database_read_url: str
    redis_url: str
    redis_sentinels: tuple
    redis_sentinel_master: str
    secret_key: str
    access_token_expire_minutes: int
    refresh_token_expire_days: int
    s3_bucket_name: str
    s3_region: str
    s3_endpoint_url: str
    s3_access_key: str
    s3_secret_key: str
    s3_ca_bundle: str
    s3_addressing_style: str
    attachment_max_bytes: int
    log_level: str
    cache_ttl_seconds: int
    db_pool_min: int
    db_pool_max: int
    db_retry_seconds: float
    db_unreachable_seconds: float
    redis_timeout_seconds: float
    redis_retry_after_seconds: float


def load():
    return Settings(
        environment=_env("ENVIRONMENT", "production"),
        debug=_env("DEBUG", "False").lower() in ("1", "true", "yes"),
        api_v1_str=_env("API_V1_STR", "/api/v1"),
        project_name=_env("PROJECT_NAME", "TeamFlow Enterprise"),
        database_url=_env("DATABASE_URL"),
        # reads a replica may answer; empty: DATABASE_URL's
        database_read_url=_env("DATABASE_READ_URL", ""),
        redis_url=_env("REDIS_URL"),
        # HOST:PORT,...: ask these sentinels where the master is (REDIS_URL's host is then not used)
        redis_sentinels=tuple((address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1]))
                              for address in _env("REDIS_SENTINELS", "").split(",") if address),
        redis_sentinel_master=_env("REDIS_SENTINEL_MASTER", "teamflow"),
        secret_key=_env("SECRET_KEY"),
        access_token_expire_minutes=int(_env("ACCESS_TOKEN_EXPIRE_MINUTES", "15")),
        refresh_token_expire_days=int(_env("REFRESH_TOKEN_EXPIRE_DAYS", "7")),
        s3_bucket_name=_env("S3_BUCKET_NAME", ""),
        s3_region=_env("S3_REGION", ""),
        # S3-compatible storage other than AWS: its URL, the CA that signed its certificate (empty: the
        # system's), and path-style addressing where the storage has no per-bucket host names
        s3_endpoint_url=_env("S3_ENDPOINT_URL", ""),
        s3_access_key=_env("S3_ACCESS_KEY", ""),
        s3_secret_key=_env("S3_SECRET_KEY", ""),
        s3_ca_bundle=_env("S3_CA_BUNDLE", ""),
        s3_addressing_style=_env("S3_ADDRESSING_STYLE", "auto"),
        attachment_max_bytes=int(_env("ATTACHMENT_MAX_BYTES", str(25 * 1024 * 1024))),
        log_level=_env("LOG_LEVEL", "INFO").upper(),
        cache_ttl_seconds=int(_env("CACHE_TTL_SECONDS", "300")),
        db_pool_min=int(_env("DB_POOL_MIN", "2")),
        db_pool_max=int(_env("DB_POOL_MAX", "10")),
        db_retry_seconds=float(_env("DB_RETRY_SECONDS", "30")),
        db_unreachable_seconds=float(_env("DB_UNREACHABLE_SECONDS", "0.5")),
        redis_timeout_seconds=float(_env("REDIS_TIMEOUT_SECONDS", "0.25")),
        redis_retry_after_seconds=float(_env("REDIS_RETRY_AFTER_SECONDS", "2")),
    )
