"""``merge-bot``: serve | migrate | check-config | status | doctor | freeze | unfreeze | pause | unpause | demo.

Errors the operator can fix (a bad setting, a port in use, an unreachable database) end as one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from bot import __version__, demo, doctor, holds, logs, status
from bot.app import create_app
from bot.clock import SystemClock
from bot.config import ConfigError, RepoSettings, Settings, load_settings, masked
from bot.db.migrate import upgrade_async
from bot.db.models import HoldSource
from bot.db.session import make_engine, make_sessionmaker
from bot.embedded_pg import EmbeddedPostgres
from bot.notify import TRAIN, notify
from bot.queue.model import HoldKind
from bot.repoconfig import file as repofile

log = logs.get_logger("bot.cli")


class CliError(Exception):
    """An operator-facing failure: printed as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="merge-bot", description="A merge queue for Gitea and Forgejo.")
    parser.add_argument("--version", action="version", version=f"merge-bot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the webhook receiver and the queue")
    commands.add_parser("migrate", help="bring the database schema to the newest version")
    check = commands.add_parser("check-config", help="validate the settings and print them, secrets masked")
    check.add_argument("--json", action="store_true", help="print JSON instead of key = value lines")
    check.add_argument(
        "--repo-file",
        metavar="PATH",
        help="validate a repository's merge-bot file (.gitea/merge-bot.toml) instead, offline",
    )
    show = commands.add_parser("status", help="show the queue in the terminal, read from the database")
    show.add_argument("--json", action="store_true", help="print what GET /api/v1/trains answers")
    show.add_argument("repository", nargs="?", help="owner/repo (default: every repository)")
    check_setup = commands.add_parser(
        "doctor", help="check that the forge, the token, the webhook and CI are set up the way the bot needs"
    )
    check_setup.add_argument(
        "--wait", type=_wait_seconds, default=10.0, metavar="SECONDS",
        help="how long to wait for the test delivery to reach the bot (default 10)",
    )
    _hold_arguments(commands)
    demo.add_arguments(commands.add_parser("demo", help="run a simulated Gitea, CI and the bot, and queue some PRs"))
    return parser


HOLD_COMMANDS = frozenset({"freeze", "unfreeze", "pause", "unpause"})


def _hold_arguments(commands: Any) -> None:
    target = "owner/repo (every branch) or owner/repo:branch"
    helps = {
        "freeze": "stop merging (PRs are still queued and tested; green ones wait)",
        "unfreeze": "lift a freeze: green PRs land",
        "pause": "start nothing new (running candidates finish, or --cancel-running)",
        "unpause": "lift a pause",
    }
    for name, text in helps.items():
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("target", metavar="owner/repo[:branch]", help=target)
        if name in ("freeze", "pause"):
            command.add_argument("--reason", required=True, help="why (shown on the PRs, the queue page, in chat)")
            command.add_argument("--until", help="lift it by itself: an ISO 8601 time with offset, or 30m, 2h, 1d12h")
        if name == "pause":
            command.add_argument(
                "--cancel-running", action="store_true", help="abandon the candidates under test (back in line)"
            )
        command.add_argument("--by", help="who does it, for the audit log (default: your login name)")


def _wait_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not 0 < seconds <= 600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 600 seconds, got {value}")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return demo.main(args)
        if args.command == "check-config" and args.repo_file:
            return check_repo_file(Path(args.repo_file), as_json=args.json)
        reading = args.command == "status" or args.command in HOLD_COMMANDS  # no webhooks: no secret needed
        settings = load_settings(status.environ() if reading else None)
        if args.command == "check-config":
            return check_config(settings, as_json=args.json)
        if args.command == "status":
            logs.configure("warning", settings.log_format, settings.secrets())
            return asyncio.run(status.show(settings, database, args.repository, as_json=args.json))
        if args.command in HOLD_COMMANDS:
            logs.configure("warning", settings.log_format, settings.secrets())
            print(asyncio.run(hold(settings, database, args)))
            return 0
        if args.command == "doctor":
            logs.configure("warning", settings.log_format, settings.secrets())
            return asyncio.run(doctor.main(settings, database, wait_seconds=args.wait))
        logs.configure(settings.log_level, settings.log_format, settings.secrets())
        if args.command == "migrate":
            asyncio.run(migrate(settings))
        elif args.command == "serve":
            asyncio.run(serve(settings))
        return 0
    except (ConfigError, CliError) as exc:
        print(f"merge-bot: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130


def check_config(settings: Settings, *, as_json: bool) -> int:
    shown = masked(settings)
    if as_json:
        print(json.dumps(shown, indent=2))
    else:
        for key, value in shown.items():
            print(f"{key} = {value}")
    return 0


def check_repo_file(path: Path, *, as_json: bool) -> int:
    """Validate a repository's file offline, against the bot's settings when they load, else the defaults.
    Problems go to stderr, one a line with the file's line number; values are never echoed (secrets)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        base: RepoSettings = load_settings()
        against = "the bot's settings"
    except ConfigError:
        base, against = RepoSettings(), "the defaults"
    parsed = repofile.parse(text, str(path), base)
    if isinstance(parsed, tuple):
        for problem in parsed:
            print(f"merge-bot: {problem}", file=sys.stderr)
        return 1
    shown = repofile.describe(parsed, base)
    if as_json:
        print(json.dumps(shown, indent=2))
    else:
        print(f"{path}: valid (checked against {against})")
        for key, value in shown.items():
            print(f"{key} = {value}")
    return 0


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[str]:
    """The configured database, or the embedded one (started here, stopped on the way out), migrated."""
    embedded: EmbeddedPostgres | None = None
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
    else:
        embedded = EmbeddedPostgres(settings.data_dir / "postgres")
        log.info("database.embedded_starting", directory=str(embedded.directory))
        try:
            url = await embedded.astart()
        except Exception as exc:
            raise CliError(f"the embedded PostgreSQL in {embedded.directory} did not start: {exc}") from None
    try:
        try:
            await upgrade_async(url)
        except (OSError, ConnectionError) as exc:
            raise CliError(f"the database is unreachable: {exc}") from None
        yield url
    finally:
        if embedded is not None:
            await embedded.astop()
            log.info("database.embedded_stopped")


async def hold(settings: Settings, database: status.Database, args: argparse.Namespace) -> str:
    """Freeze, unfreeze, pause or unpause in the database, recorded with who did it; wake the trains (a running
    ``merge-bot serve`` picks the change up at once); the line to print."""
    try:
        target = holds.Target.parse(args.target)
        holds.managed(settings, target)
        now = SystemClock().now()
        until = holds.parse_until(args.until, now) if getattr(args, "until", None) else None
    except holds.HoldError as exc:
        raise CliError(str(exc)) from None
    kind = HoldKind.FREEZE if args.command in ("freeze", "unfreeze") else HoldKind.PAUSE
    by = args.by or getpass.getuser()
    async with database(settings) as url:
        engine = make_engine(url, pool_size=1, application_name=f"merge-bot {args.command}")
        try:
            async with make_sessionmaker(engine).begin() as session:
                if args.command in ("freeze", "pause"):
                    change = await holds.place(
                        session,
                        settings,
                        target,
                        kind,
                        reason=args.reason,
                        by=by,
                        source=HoldSource.CLI,
                        now=now,
                        until=until,
                        cancel_running=getattr(args, "cancel_running", False),
                    )
                else:
                    change = await holds.lift(session, settings, target, kind, by=by, source="cli", now=now)
            for train_id in change.trains:
                await notify(engine, TRAIN, str(train_id))
        except holds.HoldError as exc:
            raise CliError(str(exc)) from None
        finally:
            await engine.dispose()
    return holds.describe(change, args.command, target)


async def migrate(settings: Settings) -> None:
    async with database(settings):
        log.info("database.migrated")


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with database(settings) as url:
        runner = web.AppRunner(create_app(settings, database_url=url), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.listen.host, settings.listen.port)
            try:
                await site.start()
            except OSError as exc:
                raise CliError(f"cannot listen on {settings.listen}: {exc.strerror}") from None
            log.info("serve.listening", listen=str(settings.listen), webhook_url=settings.webhook_url)
            await stop.wait()
            log.info("serve.stopping")
        finally:
            await runner.cleanup()
