"""The A/B experiments row of the config table (PynamoDB): one JSON list that serving reads in its one round trip
(``shopwise.dal.serving_read``) and operators set with ``shopwise experiments``."""

from __future__ import annotations

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from shopwise.dal.pynamo import bound
from shopwise.keys import EXPERIMENTS_KEY


class ExperimentsRow(Model):
    pk = UnicodeAttribute(hash_key=True)
    experiments = UnicodeAttribute()  # the experiments as a JSON list (shopwise.serving.experiments)


def get_experiments(config_table: str) -> str:
    """The stored JSON list, "" when none is set."""
    model = bound(ExperimentsRow, config_table)
    try:
        return model.get(EXPERIMENTS_KEY, consistent_read=True).experiments
    except model.DoesNotExist:
        return ""


def put_experiments(config_table: str, text: str) -> None:
    bound(ExperimentsRow, config_table)(EXPERIMENTS_KEY, experiments=text).save()


def clear_experiments(config_table: str) -> None:
    bound(ExperimentsRow, config_table)(EXPERIMENTS_KEY).delete()
