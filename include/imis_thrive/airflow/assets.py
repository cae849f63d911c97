"""The Airflow Assets the sync DAGs update; each event's `extra` carries the run's figures.

Other DAGs can be scheduled on them (e.g. a report refreshed whenever a target group changed). Target groups
are discovered at run time, so their assets hang off one alias and are named after the group.
"""

from __future__ import annotations

import re

from airflow.sdk import Asset, AssetAlias

THRIVE_CONTACTS = Asset(name="thrive_contacts", uri="thrive://contacts/default-fields")
THRIVE_TARGET_GROUPS = AssetAlias(name="thrive_target_groups")
THRIVE_PANEL_FIELDS = Asset(name="thrive_panel_fields", uri="thrive://contacts/panel-fields")
IMIS_HLOGIC_ACTIVITIES = Asset(name="imis_hlogic_activities", uri="imis://activities/hlogic")


def target_group_asset(group: str) -> Asset:
    slug = re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-") or "group"
    return Asset(name=f"thrive_target_group__{slug}", uri=f"thrive://target-groups/{slug}")
