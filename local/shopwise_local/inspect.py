"""One shopper's features as the feature store holds them now, found through stitching: what ``shopwise features
profile`` prints and the console shows."""

from __future__ import annotations

import time
from typing import Any

from shopwise.dal.feature_store import FeatureStore
from shopwise.features import definitions as f
from shopwise.features.identity import resolve
from shopwise.keys import anonymous_alias, profile_key
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise.settings import get_settings


def profile_features(shopper_id: str, anonymous: bool = False, now: float | None = None) -> dict[str, Any] | None:
    """The profile's id, aliases and named features (``ProfileFeatures.describe``), or None when the shopper has no
    profile (no events with personalisation consent yet)."""
    settings = get_settings()
    alias = (
        anonymous_alias(shopper_id)
        if anonymous
        else load_pseudonymiser(settings.pseudonym_key_secret).customer_profile(shopper_id)
    )
    target, profiles = resolve(FeatureStore(settings.features_table), [alias])
    profile_id = target[alias]
    doc = profiles[profile_key(profile_id)]
    if not doc.version:
        return None
    features = f.ProfileFeatures.from_json(doc.data.get("features"))
    return {
        "profile_id": profile_id,
        "aliases": doc.data.get("aliases", []),
        **features.describe(time.time() if now is None else now),
    }
