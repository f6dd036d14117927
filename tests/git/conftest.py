"""Fixtures for the git layer's tests: a scratch repository, the bot's runner and a candidate builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.git.candidates import CandidateBuilder
from bot.git.runner import GitRunner

from .gitrepo import BOT, Repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "work")


@pytest.fixture
def runner() -> GitRunner:
    return GitRunner(committer=BOT, timeout=30)


@pytest.fixture
def builder(runner: GitRunner, repo: Repo) -> CandidateBuilder:
    return CandidateBuilder(runner, repo.path)
