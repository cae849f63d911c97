"""The Airflow Assets the sync DAGs update; each event's `extra` carries the run's figures.

Other DAGs can be scheduled on them (e.g. a report refreshed whenever a target group changed), so an event means
that a run changed something: a dry run, a load the mass-change guard stopped and an hour without engagement emit
none (`reports.announces_a_change`). A task that declares an Asset as its outlet emits an event on every success,
whatever it did, so each task declares an `AssetAlias` instead and adds its Asset through it only when the run
wrote something (Airflow resolves the alias to the Asset; a DAG scheduled on the Asset fires on those events).
Target groups are discovered at run time, so their assets hang off one alias and are named after the group.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset, AssetAlias

log = logging.getLogger(__name__)

THRIVE_CONTACTS = Asset(name="thrive_contacts", uri="thrive://contacts/default-fields")
THRIVE_TARGET_GROUPS = AssetAlias(name="thrive_target_groups")
THRIVE_PANEL_FIELDS = Asset(name="thrive_panel_fields", uri="thrive://contacts/panel-fields")
IMIS_HLOGIC_ACTIVITIES = Asset(name="imis_hlogic_activities", uri="imis://activities/hlogic")

# The aliases the tasks declare, one per Asset above (named after it, with `_changes`).
THRIVE_CONTACTS_CHANGES = AssetAlias(name="thrive_contacts_changes")
THRIVE_PANEL_FIELDS_CHANGES = AssetAlias(name="thrive_panel_fields_changes")
IMIS_HLOGIC_ACTIVITIES_CHANGES = AssetAlias(name="imis_hlogic_activities_changes")


def target_group_asset(group: str) -> Asset:
    slug = re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-") or "group"
    return Asset(name=f"thrive_target_group__{slug}", uri=f"thrive://target-groups/{slug}")


def announce_change(alias: AssetAlias, asset: Asset, figures: Mapping[str, Any]) -> bool:
    """An event on `asset` with the figures as its `extra`, added through the running task's outlet `alias`, when
    the figures say the run wrote something; else none, and the log says so."""
    from airflow.sdk import get_current_context

    from include.imis_thrive.reports import announces_a_change

    if not announces_a_change(figures):
        log.info("no asset event for %s: this run changed nothing there", asset.name)
        return False
    get_current_context()["outlet_events"][alias].add(asset, extra=dict(figures))
    return True
