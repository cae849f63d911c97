"""Activity writeback (DESIGN.md §3): Thrive engagement events become iMIS `HLOGIC` activities, exactly once.

- `activity_map`: which activity property carries what, per engagement kind (the one place to change it);
- `event_keys`: the deterministic key of an event, written into the activity and into the ledger;
- `ledger`: the keys already written (and those a crashed run may have written), next to the snapshots;
- `writer`: bounded-concurrency posting over one shared iMIS client, checking iMIS before any re-post;
- `activities`: the steps of the `thrive_to_imis_activities` DAG, each returning a small JSON summary.
"""
