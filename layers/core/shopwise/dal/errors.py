"""What AWS raises, for callers above data access that report it instead of handling it (the CLI's one-line
errors): no region, no credentials, a refused or failed call."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

AWS_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
