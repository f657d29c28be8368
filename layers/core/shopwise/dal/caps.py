"""Campaign frequency caps (PynamoDB): a row per campaign and recipient in the feature store, ``sent#<campaign>#
<recipient>``, expiring (TTL) after the campaign's cap. Written after a run's files, read before the next run."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from shopwise.dal.pynamo import bound
from shopwise.keys import sent_key


class SentRow(Model):
    pk = UnicodeAttribute(hash_key=True)
    expires_at = NumberAttribute()


def already_sent(features_table: str, campaign: str, recipients: list[str], now: float) -> set[str]:
    """The recipients this campaign reached within its cap (rows past their TTL are ignored: deletion is lazy)."""
    model = bound(SentRow, features_table)
    by_key = {sent_key(campaign, r): r for r in recipients}
    return {by_key[row.pk] for row in model.batch_get(list(by_key)) if row.expires_at > now}


def record_sent(features_table: str, campaign: str, recipients: list[str], expires_at: float) -> None:
    model = bound(SentRow, features_table)
    with model.batch_write() as batch:
        for recipient in recipients:
            batch.save(model(sent_key(campaign, recipient), expires_at=int(expires_at)))
