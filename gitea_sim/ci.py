"""The simulated CI (`PUT /_sim/ci/{owner}/{repo}`): on each push to a matching branch it checks the commit out,
runs the repository's own command and posts pending then success/failure under its context, as user `ci`.

A configuration may have a runner limit (``runners``): like a real CI's capacity, runs beyond it wait in line
(their ``pending`` status is posted when they are queued, as Gitea Actions shows "Waiting to run") and the
delay and the command run only once a runner is free, so a run costs its full time whatever waits beside it.

Runs of a configuration with ``actions`` (the default) are Gitea Actions runs: listed by
``GET /repos/{o}/{r}/actions/runs`` and, where the simulated server is newer than 1.25 (``PUT /_sim/features
{"actions_rerun": true}``), re-run by ``POST .../actions/runs/{run}/rerun-failed-jobs`` on the same commit:
a new attempt of the same run (``run_attempt`` + 1, ``CI_RUN_ATTEMPT`` in its environment), whose ``pending`` is
posted before the call answers, as Gitea resets the jobs and their commit statuses in the request
(services/actions/rerun.go). A configuration with ``actions: false`` stands for another CI posting statuses:
its runs are not listed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from .gitrepo import run_git
from .model import CIConfig, Repo

if TYPE_CHECKING:
    from .core import Sim

CI_TIMEOUT_S = 600.0


@dataclass
class CIRun:
    id: int
    repo: str
    branch: str
    sha: str
    context: str
    command: str
    state: str = "queued"  # queued | running | success | failure | error | silent
    actions: bool = True  # a Gitea Actions run (listed by the Actions API), or another CI's
    attempt: int = 1  # Gitea's run_attempt: 1, then one more per re-run
    held: bool = False  # held back by a ``silent`` fault, until released (``CIRunner.release``)
    exit_code: int | None = None
    output: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None


class CIRunner:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.runs: dict[int, CIRun] = {}
        self._ids = itertools.count(1)
        self._workdir: Path | None = None
        self._runners: dict[tuple[int, str], asyncio.Semaphore] = {}

    async def close(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def configure(self, repo: Repo, config: CIConfig) -> None:
        repo.ci = [c for c in repo.ci if c.context != config.context] + [config]
        self._runners.pop((repo.id, config.context), None)

    def _slot(self, repo: Repo, config: CIConfig) -> asyncio.Semaphore | None:
        if config.runners <= 0:
            return None
        key = (repo.id, config.context)
        if key not in self._runners:
            self._runners[key] = asyncio.Semaphore(config.runners)
        return self._runners[key]

    def on_push(self, repo: Repo, branch: str, sha: str) -> None:
        for config in repo.ci:
            if any(fnmatchcase(branch, pattern) for pattern in config.branches):
                run = CIRun(next(self._ids), self.sim.state.repo_full_name(repo), branch, sha, config.context,
                            config.command, actions=config.actions)
                self.runs[run.id] = run
                self.sim.spawn(self._run(repo, config, run), name=f"ci-{run.id}")

    def actions_runs(self, repo: Repo) -> list[CIRun]:
        """The repository's Actions runs, newest first (as Gitea lists them: by id, descending)."""
        name = self.sim.state.repo_full_name(repo)
        return sorted((r for r in self.runs.values() if r.repo == name and r.actions), key=lambda r: -r.id)

    async def rerun(self, repo: Repo, run: CIRun) -> None:
        """A new attempt of a finished, failed run, on the same commit: ``pending`` now, the result later."""
        config = next((c for c in repo.ci if c.context == run.context), None)
        if config is None:  # its configuration is gone: nothing would run it
            raise LookupError(run.context)
        run.attempt += 1
        run.state, run.exit_code, run.output, run.finished = "queued", None, "", None
        started = asyncio.Event()
        self.sim.spawn(self._run(repo, config, run, started), name=f"ci-{run.id}-{run.attempt}")
        await started.wait()

    def release(self, repo: Repo) -> list[CIRun]:
        """The runs of ``repo`` held back by a ``silent`` fault start now, as if a runner had picked them up
        late: ``pending``, then the repository's command on their commit and its verdict (a test holds a
        candidate's CI back and decides when it answers, and the answer is still the real one). A run whose
        configuration is gone stays held."""
        released = []
        for run in sorted(self.runs.values(), key=lambda r: r.id):
            config = next((c for c in repo.ci if c.context == run.context), None)
            if not run.held or run.repo != self.sim.state.repo_full_name(repo) or config is None:
                continue
            run.held, run.state = False, "queued"
            self.sim.spawn(self._released(repo, config, run), name=f"ci-{run.id}-released")
            released.append(run)
        return released

    async def _released(self, repo: Repo, config: CIConfig, run: CIRun) -> None:
        await self.sim.add_status(repo, run.sha, "pending", config.context, config.description_pending,
                                  self.run_url(run), self.sim.ci_user())
        slot = self._slot(repo, config)
        async with slot if slot is not None else contextlib.nullcontext():
            await self._work(repo, config, run, "")

    def run_url(self, run: CIRun) -> str:
        return f"{self.sim.base_url}/_sim/ci/runs/{run.id}"

    async def _run(self, repo: Repo, config: CIConfig, run: CIRun, started: asyncio.Event | None = None) -> None:
        try:
            fault = self.sim.faults.take_ci(run.repo, run.context)
            action = fault.action if fault else ""
            ci = self.sim.ci_user()
            self.sim.log.add("ci", run=run.id, repo=run.repo, sha=run.sha, context=run.context, phase="start",
                             fault=action, attempt=run.attempt)
            if action == "silent":
                run.state, run.held = "silent", True
                return
            await self.sim.add_status(repo, run.sha, "pending", config.context, config.description_pending,
                                      self.run_url(run), ci)
        finally:
            if started is not None:
                started.set()
        if action == "pending_forever":
            run.state = "silent"
            return
        slot = self._slot(repo, config)
        async with slot if slot is not None else contextlib.nullcontext():  # a runner is busy until it reports
            await self._work(repo, config, run, action)

    async def _work(self, repo: Repo, config: CIConfig, run: CIRun, action: str) -> None:
        self.sim.log.add("ci", run=run.id, repo=run.repo, sha=run.sha, context=run.context, phase="running",
                         attempt=run.attempt)
        run.state = "running"
        started = time.monotonic()
        if config.delay_s:
            await asyncio.sleep(config.delay_s)
        if action in ("fail", "error"):
            code, output = 1, f"injected CI fault: {action}\n"
        else:
            code, output = await self._execute(repo, run)
        run.exit_code, run.output, run.finished = code, output, time.time()
        took = time.monotonic() - started
        if action == "error":
            state, desc = "error", "CI infrastructure error (injected)"
        elif code == 0:
            state, desc = "success", f"Successful in {took:.1f}s"
        else:
            state, desc = "failure", f"Failing after {took:.1f}s (exit {code})"
        run.state = state
        await self.sim.add_status(repo, run.sha, state, config.context, desc, self.run_url(run), self.sim.ci_user())
        self.sim.log.add("ci", run=run.id, repo=run.repo, sha=run.sha, context=run.context, phase="done",
                         state=state, exit_code=code, attempt=run.attempt)

    async def _execute(self, repo: Repo, run: CIRun) -> tuple[int, str]:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="gitea-sim-ci-"))
        checkout = self._workdir / f"run-{run.id}-{run.attempt}"
        try:
            await run_git(["clone", "--quiet", "--shared", "--no-checkout", str(repo.path), str(checkout)])
            await run_git(["-C", str(checkout), "checkout", "--quiet", "--detach", run.sha])
            env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
            env.update({"CI": "true", "CI_COMMIT_SHA": run.sha, "CI_COMMIT_BRANCH": run.branch,
                        "CI_REPO": run.repo, "CI_RUN_ID": str(run.id), "CI_RUN_ATTEMPT": str(run.attempt)})
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", run.command, cwd=str(checkout), env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), CI_TIMEOUT_S)
            except (TimeoutError, asyncio.CancelledError) as exc:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                await proc.wait()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return 124, "CI command timed out\n"
            return (proc.returncode or 0), out.decode(errors="replace")
        except Exception as exc:  # the runner must always report
            return 1, f"CI runner error: {exc}\n"
        finally:
            shutil.rmtree(checkout, ignore_errors=True)
