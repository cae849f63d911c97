"""`make sandbox`: run the iMIS and Thrive sandboxes and the alert-mail sink in the foreground.

    python -m sandbox [--contacts N] [--seed S] [--broken-lists] [--flavor ems|2017] [--engagement-day]
        [--page-cap N] [--startrow-base 0|1] [--fault-shape aapi|service|faultcode] [--grids documented|extended]
        [--upload-status complete|processed|PENDING:DONE] [--compression on-request|never] [--no-strict]

`--flavor 2017` answers QueryDefinition as iMIS 2017 does (default: $IMIS_SANDBOX_FLAVOR, else ems);
`--page-cap N` serves at most N rows a page while echoing the requested Limit, as some instances do.
`--engagement-day` (what `make airflow` passes): once the first target-group sync has put members into Thrive's
campaign groups, Thrive "mails" them and records a day of engagement, hour by hour, from 23 hours before the
current hour to its end, so the activities DAG's next hourly run writes activities, and a backfill of the day does.
The Thrive flags pick one reading of each detail Higher Logic's pages leave open (their defaults come from
THRIVE_SANDBOX_ALTERNATIVES, e.g. `startrow_base=1,fault_shape=faultcode`, which the test fixtures read too).

The ports, path prefixes and credentials come from the `imis_default` and `thrive_default` connections in
airflow_settings.yaml, so the DAGs reach the sandboxes with the very settings they would use for real systems.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.airflow_settings import SETTINGS_FILE, AirflowSettings, load_settings
from sandbox.imis_app import Flavor, ImisSandbox, ImisSandboxConfig, default_flavor
from sandbox.server import SandboxServer
from sandbox.smtp import ReceivedMail, SmtpSink, print_mail
from sandbox.thrive_app import ThriveSandbox, ThriveSandboxConfig

# The sandbox lists an active campaign mails to, i.e. the ones the hourly schedule syncs.
CAMPAIGN_LISTS = ("Newsletter", "Annual Conference 2026")
ENGAGEMENT_HOURS = 24
ENGAGEMENT_PER_HOUR = 200  # events an hour: a few seconds of writing per hourly run on a laptop
ENGAGEMENT_POLL_S = 5.0


@dataclass
class RunningSandboxes:
    imis: ImisSandbox
    thrive: ThriveSandbox
    imis_server: SandboxServer
    thrive_server: SandboxServer
    smtp: SmtpSink


def build_sandboxes(settings: AirflowSettings, contacts: int, seed: int, broken_lists: bool,
                    flavor: Flavor | None = None, page_cap: int | None = None,
                    thrive_options: dict[str, Any] | None = None) -> tuple[ImisSandbox, ThriveSandbox]:
    imis = settings.connection("imis_default")
    thrive = settings.connection("thrive_default")
    imis_sandbox = ImisSandbox(ImisSandboxConfig(
        users={imis.conn_login or "": imis.conn_password or ""}, contacts=contacts, seed=seed,
        broken_lists=broken_lists, timezone=str(imis.conn_extra.get("timezone", "UTC")),
        path_prefix=imis.url_path().rstrip("/"), flavor=flavor or default_flavor(), page_cap=page_cap,
    ))
    # Higher Logic creates a target group for each list IQA; the AAPI cannot, so the sandbox starts with them.
    lists = sorted(imis_sandbox.seed.lists)
    thrive_sandbox = ThriveSandbox(ThriveSandboxConfig.from_connection(
        thrive, seed=seed, interests=lists,
        campaign_interests=[name for name in lists if name in CAMPAIGN_LISTS], **(thrive_options or {}),
    ))
    return imis_sandbox, thrive_sandbox


@contextmanager
def running_sandboxes(settings: AirflowSettings | None = None, contacts: int = 2000, seed: int = 1,
                      broken_lists: bool = False,
                      on_mail: Callable[[ReceivedMail], None] | None = None, flavor: Flavor | None = None,
                      page_cap: int | None = None,
                      thrive_options: dict[str, Any] | None = None) -> Iterator[RunningSandboxes]:
    """iMIS, Thrive and the alert-mail sink in background threads on the settings file's ports."""
    settings = settings or load_settings()
    imis_sandbox, thrive_sandbox = build_sandboxes(settings, contacts, seed, broken_lists, flavor, page_cap,
                                                   thrive_options)
    with ExitStack() as stack:
        imis_server = stack.enter_context(
            SandboxServer(imis_sandbox.app, port=settings.connection("imis_default").loopback_port()))
        thrive_server = stack.enter_context(
            SandboxServer(thrive_sandbox.app, port=settings.connection("thrive_default").loopback_port()))
        smtp = stack.enter_context(SmtpSink(port=settings.connection("smtp_default").loopback_port(),
                                            on_mail=on_mail))
        yield RunningSandboxes(imis_sandbox, thrive_sandbox, imis_server, thrive_server, smtp)


def seed_engagement_day(thrive: ThriveSandbox, now: datetime, per_hour: int = ENGAGEMENT_PER_HOUR,
                        hours: int = ENGAGEMENT_HOURS) -> dict[str, int]:
    """A day of engagement of the campaign groups' members, one mailing round per hour, the last hour being the
    current one (so the activities DAG's next run finds events); raises ValueError while Thrive has no members."""
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    totals: dict[str, int] = {}
    for hour in range(hours):
        start = end - timedelta(hours=hours - hour)
        made = thrive.generate_engagement(start, start + timedelta(hours=1), volume=per_hour, seed=hour)
        for kind, count in made.items():
            totals[kind] = totals.get(kind, 0) + count
    return totals


def seed_engagement_when_synced(thrive: ThriveSandbox, stop: threading.Event,
                                poll_s: float = ENGAGEMENT_POLL_S) -> None:
    """Wait for the first target-group sync (Thrive's campaign groups hold members), then seed a day once."""
    while not stop.wait(poll_s):
        try:
            totals = seed_engagement_day(thrive, datetime.now(UTC))
        except ValueError:  # no subscribed members yet: the target-group DAG has not loaded any
            continue
        print(f"Thrive sandbox: seeded a day of engagement ({sum(totals.values()):,} events in the "
              f"{ENGAGEMENT_HOURS} hours up to the end of this hour) for the activities DAG to write", flush=True)
        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", type=Path, default=SETTINGS_FILE,
                        help="the airflow_settings.yaml whose connections name the ports (default: the project's)")
    parser.add_argument("--contacts", type=int, default=2000, help="contacts to seed (10 to 1,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--broken-lists", action="store_true", help="also serve lists that break each requirement")
    parser.add_argument("--flavor", choices=("ems", "2017"), default=None,
                        help="iMIS answers to emulate (default: $IMIS_SANDBOX_FLAVOR, else ems)")
    parser.add_argument("--engagement-day", action="store_true",
                        help="seed a day of Thrive engagement once the first target-group sync loaded members")
    parser.add_argument("--page-cap", type=int, default=None,
                        help="serve at most this many rows a page while echoing the requested Limit")
    thrive = parser.add_argument_group("Thrive emulator: the open details (defaults from THRIVE_SANDBOX_ALTERNATIVES)")
    thrive.add_argument("--startrow-base", type=int, choices=(0, 1), help="StartRow of the first row")
    thrive.add_argument("--fault-shape", choices=("aapi", "service", "faultcode"),
                        help="InformzAAPIFault detail, InformzServiceFault detail, or a prefixed faultcode only")
    thrive.add_argument("--grids", choices=("documented", "extended"),
                        help="only the grids vendor pages name, or also the third-party-only ones")
    thrive.add_argument("--upload-status", help="upload_history.status values: complete, processed or PENDING:DONE")
    thrive.add_argument("--compression", choices=("on-request", "never"), help="answer a compressed request compressed")
    thrive.add_argument("--no-strict", dest="strict", action="store_false", default=None,
                        help="accept what the vendor pages rule out (the old BulkUpload layout, no ReturnFields)")
    args = parser.parse_args()
    thrive_options = {name: getattr(args, name) for name in
                      ("startrow_base", "fault_shape", "grids", "upload_status", "compression", "strict")
                      if getattr(args, name) is not None}
    stop = threading.Event()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # both stop within seconds, requests in flight or not
        signal.signal(stop_signal, lambda *_: stop.set())
    with running_sandboxes(settings=load_settings(args.settings), contacts=args.contacts, seed=args.seed,
                           broken_lists=args.broken_lists, on_mail=print_mail, flavor=args.flavor,
                           page_cap=args.page_cap, thrive_options=thrive_options) as running:
        print(f"iMIS sandbox:   {running.imis_server.url}{running.imis.config.path_prefix}  ({args.contacts} contacts, "
              f"iMIS {running.imis.config.flavor} answers)")
        config = running.thrive.config
        print(f"Thrive sandbox: {running.thrive_server.url}{config.endpoint_path}  (strict={config.strict}, "
              f"startrow_base={config.startrow_base}, fault_shape={config.fault_shape}, grids={config.grids}, "
              f"upload_status={config.upload_status}, compression={config.compression})")
        print(f"SMTP sink:      {running.smtp.host}:{running.smtp.port} (alert mails are printed here)")
        if args.engagement_day:
            threading.Thread(target=seed_engagement_when_synced, args=(running.thrive, stop), daemon=True).start()
            print("Thrive sandbox: a day of engagement will be seeded once a target-group sync loads members")
        print("Ctrl-C to stop.", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
