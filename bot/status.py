"""``merge-bot status [--json] [owner/repo]``: the queue page in the terminal, read from the database.

The database is the configured one, or the embedded one in the data dir (started for the read and
stopped after, or joined when ``merge-bot serve`` already runs it). ``--json`` prints what
``GET /api/v1/trains`` answers. :func:`render` is shared with ``merge-bot demo``'s live view.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot.clock import SystemClock
from bot.config import ENV_PREFIX, Settings
from bot.db.session import make_engine
from bot.web import views
from bot.web.pages import ago, duration

STATE_STYLE = {
    "merged": "green",
    "failed": "red",
    "cancelled": "dim",
    "testing": "cyan",
    "building": "cyan",
    "passed": "green",
    "merging": "green",
    "success": "green",
    "pending": "yellow",
    "failure": "red",
    "error": "red",
}


def environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for reading settings: ``status`` never receives webhooks, so it needs no secret."""
    values = dict(os.environ if env is None else env)
    values.setdefault(ENV_PREFIX + "WEBHOOK_SECRET", "unused-by-merge-bot-status")
    return values


Database = Callable[[Settings], AbstractAsyncContextManager[str]]


async def show(
    settings: Settings, database: Database, repository: str | None, *, as_json: bool, console: Console | None = None
) -> int:
    now = SystemClock().now()
    async with database(settings) as url:
        trains = await read(url, settings, now, repository)
    out = console or Console()
    if as_json:
        out.out(json.dumps(views.jsonable({"generated_at": now, "trains": trains}), indent=2), highlight=False)
        return 0
    if not trains:
        out.print(f"Nothing has been queued{' in ' + repository if repository else ''} yet.")
        return 0
    out.print(render(trains, now))
    return 0


async def read(url: str, settings: Settings, now: datetime, repository: str | None) -> list[views.TrainRow]:
    engine = make_engine(url, pool_size=1, application_name="merge-bot status")
    try:
        async with views.reading(engine) as session:
            return await views.trains(session, views.links(settings), now, repository)
    finally:
        await engine.dispose()


def render(trains: list[views.TrainRow], now: datetime) -> RenderableType:
    return Group(*(_train(train, now) for train in trains))


def _styled(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def _train(train: views.TrainRow, now: datetime) -> Panel:
    parts: list[RenderableType] = [_chain(train, now)]
    line = Table(title="Next in line", title_justify="left", expand=True, show_edge=False, pad_edge=False)
    for name, options in (
        ("#", {"justify": "right", "width": 3}),
        ("PR", {"no_wrap": True}),
        ("Title", {"ratio": 3}),
        ("Priority", {"justify": "right"}),
        ("Approved by", {}),
        ("After", {}),
        ("Queued", {"no_wrap": True}),
    ):
        line.add_column(name, **options)
    for entry in train.queue:
        line.add_row(
            str(entry.position),
            f"#{entry.pull.number}",
            entry.pull.title,
            str(entry.priority),
            entry.approved_by,
            ", ".join(entry.dependencies),
            ago(entry.queued_at, now),
        )
    for entry in train.waiting:
        line.add_row(
            "…",
            f"#{entry.pull.number}",
            entry.pull.title,
            str(entry.priority),
            entry.approved_by,
            entry.blocked or ", ".join(entry.dependencies) or "approvals",
            ago(entry.queued_at, now),
            style="dim",
        )
    if train.queue or train.waiting:
        parts.append(line)
    else:
        parts.append(Text("No PR is waiting for its turn.", style="dim"))
    if train.recent:
        recent = Table(title="Recent outcomes", title_justify="left", expand=True, show_edge=False, pad_edge=False)
        recent.add_column("Outcome", no_wrap=True)
        recent.add_column("PR", no_wrap=True)
        recent.add_column("Title", ratio=2)
        recent.add_column("Why", ratio=2)
        recent.add_column("When", no_wrap=True)
        for entry in train.recent:
            recent.add_row(
                _styled(entry.state),
                f"#{entry.pull.number}",
                entry.pull.title,
                " · ".join(text for text in (entry.reason_text, entry.tested_in and entry.tested_in.text) if text),
                ago(entry.finished_at, now),
            )
        parts.append(recent)
    if train.flakes:
        flaky = Text("Flaky checks (flaky failures of the candidate results per check): ", style="bold")
        flaky.append(" · ".join(f"{views.check_name(rate.context)} {views.rate_text(rate)}" for rate in train.flakes))
        parts.append(flaky)
    flags = "".join(f", {flag}" for flag, on in (("frozen", train.frozen), ("paused", train.paused)) if on)
    title = f"[b]{train.repository}[/b] → {train.branch}  ({train.depth} active{flags})"
    for hold in reversed(train.holds):
        parts.insert(0, Text(hold.text[0].upper() + hold.text[1:], style="bold yellow"))
    return Panel(Group(*parts), title=title, title_align="left")


def _chain(train: views.TrainRow, now: datetime) -> RenderableType:
    """Where the base is, then every active attempt in chain order, one line each, indented by its depth (how
    many attempts it is built on), with its details under it."""
    head = Text("Chain: ", style="bold")
    head.append(f"{len(train.attempts)} under test · window {train.window} of at most {train.max_parallel} · ")
    head.append(f"base {train.branch} at {train.base_sha[:10]}" if train.base_sha else f"base {train.branch}")
    if train.landed_sha and train.landed_at:
        moved = "moved there" if train.landed_sha == train.base_sha else f"last moved to {train.landed_sha[:10]}"
        head.append(f" ({moved} by the queue {ago(train.landed_at, now)})", style="dim")
    lines: list[RenderableType] = [head]
    if train.adaptive is not None:
        chosen = f"Adaptive: batches of up to {train.adaptive.batch}, window {train.adaptive.window}"
        lines.append(Text(chosen + (f" — {train.adaptive.reason}" if train.adaptive.reason else ""), style="dim"))
    if not train.attempts:
        return Group(*lines, Text("Nothing is being tested.", style="dim"))
    return Group(*lines, *(_attempt(attempt, now) for attempt in train.attempts))


def _attempt(attempt: views.AttemptRow, now: datetime) -> RenderableType:
    depth = attempt.depth or 0
    lead = "  " * depth + ("└ " if depth else "")
    more = " " * len(lead) + "    "
    text = Text(lead)
    text.append(f"attempt {attempt.id} ", style="bold")
    text.append_text(_styled(attempt.state))
    text.append("  ")
    text.append(", ".join(f"#{pull.number} {pull.title}" for pull in attempt.pulls))
    text.append(f"  · on #{attempt.parent_id}" if attempt.parent_id else f"  · on the base tip {attempt.base_sha[:10]}")
    if attempt.part is not None:
        parts = len(attempt.bisection.parts) if attempt.bisection is not None else 2
        text.append(f" · part {attempt.part} of {parts}", style="yellow")
    if attempt.retry_of is not None:
        text.append(f" · re-test {max(attempt.retries, 1)}", style="yellow")
    text.append(f" · started {ago(attempt.started_at, now)}", style="dim")
    if attempt.note:
        text.append(f"\n{more}{attempt.note}", style="yellow")
        if attempt.bisection is not None:
            text.append(f"\n{more}{attempt.bisection.known}")
    if attempt.retry_note:
        text.append(f"\n{more}{attempt.retry_note}", style="yellow")
    if attempt.candidate_sha:
        built = f"candidate {attempt.candidate_sha[:10]} on {attempt.ref or '?'} from {attempt.base_sha[:10]}"
        text.append(f"\n{more}{built}")
    else:
        text.append(f"\n{more}building on {attempt.base_sha[:10]}")
    if attempt.seconds_left is not None:
        text.append(f", {duration(attempt.seconds_left)} left")
    if attempt.checks:
        text.append(f"\n{more}checks: ")
        for index, check in enumerate(attempt.checks):
            if index:
                text.append(" · ")
            text.append(f"{check.context} ")
            text.append_text(_styled(check.state))
    elif attempt.candidate_sha:
        text.append(f"\n{more}checks: none reported yet", style="dim")
    return text
