"""The `hemmon` command (contract.md). Translates arguments into calls; no logic of its own."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from .errors import Unavailable
from .settings import Settings, SettingsError, load_settings, mqtt_address

log = logging.getLogger("hemmon")


def _normalise(args: argparse.Namespace) -> int:
    from hemmon.ingest.model import Device, SourceFormat
    from hemmon.ingest.normalise import normalise
    from hemmon.ingest.topics import readings_topic

    fmt = SourceFormat(args.format)
    device = Device(id="cli-device", patient_id="cli-patient", format=fmt)
    status = 0
    for name in args.files:
        try:
            raw = Path(name).read_bytes()
        except OSError as exc:
            print(f"hemmon: cannot read {name}: {exc.strerror}", file=sys.stderr)
            status = 1
            continue
        result = normalise(raw, topic=readings_topic(device.id, fmt.value),
                           devices={device.id: device}, received_at=datetime.now(UTC))
        for r in result.readings:
            print(json.dumps({"kind": "reading", "file": name, "type": r.type.value,
                              "value": r.value, "unit": r.unit,
                              "measured_at": r.measured_at.isoformat(), "manual": r.manual,
                              "key": r.key}, ensure_ascii=False))
        for j in result.rejections:
            print(json.dumps({"kind": "rejection", "file": name, "reason": j.reason.value,
                              "detail": j.detail}, ensure_ascii=False))
    return status


def _migrate(settings: Settings) -> int:
    from .db import migrate

    applied = migrate(settings.require_database_url())
    print(f"schema up to date ({len(applied)} migration(s) applied)")
    return 0


def _roster_load(settings: Settings, args: argparse.Namespace) -> int:
    from .db import connect
    from .roster import load_roster, read_roster

    roster = read_roster(Path(args.file))
    with connect(settings.require_database_url()) as conn:
        result = load_roster(conn, roster, actor=args.actor, reason=args.reason,
                             now=datetime.now(UTC))
    print(f"roster loaded: {len(roster.patients)} patients, {result.changed_rows} rows changed,"
          f" {result.new_rule_versions} new rule versions")
    return 0


def _hours(text: str) -> float:
    hours = float(text)
    if not 0 < hours <= 90 * 24:
        raise argparse.ArgumentTypeError("give a lifetime above 0 and at most 2160 hours")
    return hours


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from hemmon.alerts import credentials
    from hemmon.alerts.access import Principal

    from .db import connect

    now = datetime.now(UTC)
    with connect(settings.require_database_url()) as conn:
        if args.token_command == "revoke":
            if not credentials.revoke_token(conn, args.id, now):
                raise SettingsError(f"token {args.id}: no such token, or revoked already")
            print(f"token {args.id} revoked")
            return 0
        clinician = credentials.clinician_by_id(conn, args.user)
        if args.token_command == "code":
            if clinician is None:
                raise SettingsError(f"--user {args.user}: no such clinician in the roster")
            code = credentials.create_login_code(conn, args.user, now=now)
            print(f"engångskod för {args.user}: {code} (gäller en gång, i tio minuter)")
            return 0
        if args.role == "nurse" and clinician is None:
            raise SettingsError(f"--user {args.user}: no such clinician in the roster")
        if args.role == "mobile_team" and not (
                clinician is not None or credentials.team_known(conn, args.team)):
            raise SettingsError(f"--team {args.team}: a mobile_team token needs a roster team")
        lifetime = timedelta(hours=args.hours)
        token_id, token = credentials.issue_token(
            conn, settings.require_secret_key(),
            Principal(user=args.user, role=args.role, team_id=args.team), now=now,
            lifetime=lifetime)
    print(token)
    print(f"token id {token_id}, valid until {(now + lifetime).isoformat(timespec='seconds')};"
          f" revoke with: hemmon token revoke {token_id}", file=sys.stderr)
    return 0


def _run(settings: Settings) -> int:
    pipelines = settings.pipeline_processes
    with tempfile.TemporaryDirectory(prefix="hemmon-metrics-") as shared:
        if pipelines and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            # every process's metrics summed at /metrics; this must be set before the
            # first metric exists, in this process and (inherited) in the pipelines
            if "hemmon.metrics" in sys.modules:
                raise AssertionError("hemmon.metrics was imported before `hemmon run` began")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
        return _serve(settings, pipelines)


def _serve(settings: Settings, pipelines: int) -> int:
    from hemmon.alerts.signin import auth_from_settings

    from .notifier import journal_for
    from .service import Service, ServiceConfig

    service = Service(ServiceConfig(
        database_url=settings.require_database_url(),
        mqtt=mqtt_address(settings.mqtt_url),
        secret_key=settings.require_secret_key(),
        http_host=settings.http_host,
        http_port=settings.http_port,
        batch_max=settings.batch_max,
        batch_wait_ms=settings.batch_wait_ms,
        escalate_after=timedelta(minutes=settings.escalate_after_minutes),
        zone=settings.zone,
        pipelines=pipelines,
        client_id=settings.mqtt_client_id,
        log_level=settings.log_level,
        webhook=settings.webhook(),
        auth=auth_from_settings(settings),
        journal=journal_for(settings),
        fhir_system=settings.fhir_system,
    ))
    service.start()
    try:
        service.serve(lambda: log.info("hemmon running: inbox on http://%s:%d/",
                                       settings.http_host, settings.http_port))
    finally:
        service.stop()
    return 0


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from .simulator import roster_for, run_simulation, virtual_patients

    patients = virtual_patients(args.patients, prefix=args.prefix,
                                deteriorating=args.deteriorate, seed=args.seed)
    if args.roster_out:
        Path(args.roster_out).write_text(
            yaml.safe_dump(roster_for(patients), allow_unicode=True, sort_keys=False),
            encoding="utf-8",
        )
        print(f"roster for {len(patients)} virtual patients written to {args.roster_out}")
        if args.sessions == 0:
            return 0
    spacing = timedelta(hours=args.spacing_hours)
    start = datetime.now(UTC) - spacing * max(args.sessions - 1, 0)
    sent = run_simulation(mqtt_address(settings.mqtt_url), patients, sessions=args.sessions,
                          start=start, spacing=spacing, rate=args.rate, seed=args.seed,
                          progress=not args.quiet)
    print(f"{sent} messages published")
    return 0


def _mosquitto_config(args: argparse.Namespace) -> int:
    from hemmon.ingest.broker_auth import write_broker_files

    from .roster import read_roster

    roster = read_roster(Path(args.roster))
    devices = [d.id for p in roster.patients for d in p.devices]
    out = Path(args.out)
    users = write_broker_files(out, devices, args.service_user)
    print(f"wrote {out}/hemmon.passwd and {out}/hemmon.acl for {len(users) - 1} devices and"
          f" the service account {args.service_user!r}; passwords in {out}/credentials.csv"
          " (mode 0600: hand each device its own, give the service its URL as"
          f" mqtt://{args.service_user}:PASSWORD@HOST:PORT)")
    return 0


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from .db import connect
    from .report import build, to_csv, to_html

    zone = settings.zone
    try:
        start = datetime.fromisoformat(args.start).replace(tzinfo=zone)
        end = datetime.fromisoformat(args.end).replace(tzinfo=zone)
    except ValueError as exc:
        raise SettingsError(f"--from/--to: {exc} (write dates as 2026-11-01)") from exc
    if end <= start:
        raise SettingsError("--to must come after --from")
    with connect(settings.require_database_url()) as conn:
        report = build(conn, start, end, args.unit, zone, progress=not args.quiet)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(to_html(report), encoding="utf-8")
    (out / "report.csv").write_text(to_csv(report), encoding="utf-8")
    print(f"report for {report.patients} patients written to {out}/report.html and"
          f" {out}/report.csv")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(http_port=args.http_port, broker=args.broker)


def _bridge(settings: Settings) -> int:
    from hemmon.ingest.bridge import Bridge

    from .service import serve_role

    bridge = Bridge(mqtt_address(settings.mqtt_url), settings.kafka_bootstrap,
                    kafka_topic=settings.kafka_topic, client_id=settings.bridge_client_id,
                    share_group=settings.bridge_group, batch_max=settings.batch_max,
                    batch_wait_ms=settings.batch_wait_ms)
    bridge.start()
    try:
        serve_role(lambda: bridge.ready, settings.http_host, settings.http_port,
                   lambda: log.info("hemmon bridge running: MQTT -> Kafka topic %s",
                                    settings.kafka_topic))
    finally:
        bridge.stop()
    return 0


def _cohort(args: argparse.Namespace) -> int:
    from .cohort.run import write_cohort

    if args.patients < 1 or args.days < 1:
        print("hemmon: --patients and --days must be at least 1", file=sys.stderr)
        return 2
    figures = write_cohort(Path(args.out), patients=args.patients, days=args.days,
                           seed=args.seed)
    print(json.dumps({"out": args.out, "goals": figures["goals"]}, ensure_ascii=False))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hemmon", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="everything on this machine, with demo patients")
    demo.add_argument("--http-port", type=int, default=None)
    demo.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default="auto")
    sub.add_parser("run", help="the single-process pipeline and inbox")
    sub.add_parser("bridge", help="distributed role: MQTT -> Kafka, acknowledged after Kafka")
    sub.add_parser("worker", help="distributed role: faust agents, Kafka -> readings, findings")
    sub.add_parser("alerts", help="distributed role: findings -> alerts, sweeps, inbox")
    sub.add_parser("migrate", help="create or upgrade the database schema")
    roster = sub.add_parser("roster", help="the roster of units, staff, patients, devices")
    roster_sub = roster.add_subparsers(dest="roster_command", required=True)
    load = roster_sub.add_parser("load", help="load a roster YAML file (idempotent)")
    load.add_argument("file")
    load.add_argument("--actor", default="roster-file")
    load.add_argument("--reason", default="roster loaded from file")
    token = sub.add_parser("token", help="API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="print a signed API token (id on stderr)")
    create.add_argument("--user", required=True)
    create.add_argument("--role", required=True, choices=("nurse", "mobile_team", "admin"))
    create.add_argument("--team")
    create.add_argument("--hours", type=_hours, default=12.0,
                        help="lifetime (default 12 hours, at most 90 days)")
    revoke = token_sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id")
    code = token_sub.add_parser("code", help="a one-time sign-in code for a roster clinician")
    code.add_argument("--user", required=True)
    simulate = sub.add_parser("simulate", help="publish readings of virtual patients")
    simulate.add_argument("--patients", type=int, default=10)
    simulate.add_argument("--sessions", type=int, default=3,
                          help="measurement sessions per patient")
    simulate.add_argument("--spacing-hours", type=float, default=12.0)
    simulate.add_argument("--deteriorate", type=int, default=1,
                          help="how many patients get worse")
    simulate.add_argument("--rate", type=float, default=None, help="messages per second")
    simulate.add_argument("--prefix", default="sim")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--roster-out", help="also write a roster for these patients")
    simulate.add_argument("--quiet", action="store_true")
    report = sub.add_parser("report", help="follow-up figures for a period, HTML and CSV")
    report.add_argument("--from", dest="start", required=True, help="first day, 2026-11-01")
    report.add_argument("--to", dest="end", required=True, help="day after the last")
    report.add_argument("--unit", help="one unit's patients only")
    report.add_argument("--out", default="report", help="folder for report.html, report.csv")
    report.add_argument("--quiet", action="store_true")
    broker = sub.add_parser("mosquitto-config",
                            help="Mosquitto password file and ACL from a roster")
    broker.add_argument("roster")
    broker.add_argument("--out", required=True, help="folder for the files")
    broker.add_argument("--service-user", default="hemmon-service")
    normalise = sub.add_parser("normalise", help="print readings and rejections of files")
    normalise.add_argument("--format", required=True,
                           choices=("native", "fhir", "omh", "withings", "ihealth"))
    normalise.add_argument("files", nargs="+")
    backtest = sub.add_parser("backtest", help="the rules and alert lifecycle over recorded"
                              " messages on a simulated clock (no services needed)")
    backtest.add_argument("--roster", required=True, help="roster YAML file")
    backtest.add_argument("--messages", required=True,
                          help="JSON lines: {topic, payload, received_at?}")
    backtest.add_argument("--from", dest="start", help="ISO time: ignore messages before")
    backtest.add_argument("--to", dest="end", help="ISO time: ignore messages from here on")
    backtest.add_argument("--resolve-after", default="24h",
                          help="an alert counts as resolved this long after it opened")
    cohort = sub.add_parser("cohort", help="a simulated population with ground truth, "
                            "backtested: roster, messages, truth, report.html, evidence.json")
    cohort.add_argument("--patients", type=int, default=100)
    cohort.add_argument("--days", type=int, default=30)
    cohort.add_argument("--seed", type=int, default=1)
    cohort.add_argument("--out", required=True, help="folder for the files")
    return top


def _backtest(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import TypeAdapter, ValidationError

    from .backtest import BacktestError, read_messages, run_backtest
    from .roster import read_roster
    from .rules.model import Duration

    try:
        resolve_after = TypeAdapter(Duration).validate_python(args.resolve_after)
    except ValidationError as exc:
        raise SettingsError(f"--resolve-after {args.resolve_after!r}: write e.g. 24h or 2d"
                            ) from exc
    bounds = []
    for name, value in (("--from", args.start), ("--to", args.end)):
        try:
            moment = datetime.fromisoformat(value) if value else None
        except ValueError as exc:
            raise SettingsError(f"{name} {value!r}: not an ISO time") from exc
        if moment is not None and moment.tzinfo is None:
            raise SettingsError(f"{name} {value!r}: give a time zone offset")
        bounds.append(moment)
    roster = read_roster(Path(args.roster))
    try:
        with open(args.messages, encoding="utf-8") as lines:
            messages = read_messages(lines)
    except OSError as exc:
        raise SettingsError(f"--messages {args.messages}: {exc.strerror}") from exc
    except BacktestError as exc:
        raise SettingsError(f"--messages {args.messages}: {exc}") from exc
    for record in run_backtest(roster, messages, start=bounds[0], end=bounds[1],
                               resolve_after=resolve_after, zone=settings.zone):
        print(json.dumps(record, ensure_ascii=False, sort_keys=True))
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # uvicorn re-raises the signal after its own shutdown; exiting this way (rather than
    # by the default action) lets every cleanup run: brokers, databases, temp files.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        settings = load_settings()
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        match args.command:
            case "normalise":
                return _normalise(args)
            case "backtest":
                return _backtest(args, settings)
            case "demo":
                return _demo(args)
            case "migrate":
                return _migrate(settings)
            case "roster":
                return _roster_load(settings, args)
            case "token":
                return _token(settings, args)
            case "run":
                return _run(settings)
            case "simulate":
                return _simulate(settings, args)
            case "bridge":
                return _bridge(settings)
            case "worker":
                from .roles import run_worker

                return run_worker(settings)
            case "alerts":
                from .roles import run_alerts

                return run_alerts(settings)
            case "mosquitto-config":
                return _mosquitto_config(args)
            case "report":
                return _report(settings, args)
            case "cohort":
                return _cohort(args)
            case _:
                raise AssertionError(args.command)
    except (SettingsError, Unavailable) as exc:
        # a bad setting, or a service it names that cannot be reached at start
        print(f"hemmon: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"hemmon: cannot connect to the MQTT broker at HEMMON_MQTT_URL: {exc}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
