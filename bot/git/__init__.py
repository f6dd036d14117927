"""The bot's git layer: one runner, cached bare mirrors, and worktree-free candidate builds."""

from bot.git.candidates import (
    BuildResult,
    Built,
    CandidateBuilder,
    Conflict,
    NothingToMerge,
    Signature,
    git_date,
)
from bot.git.mirror import Mirror, MirrorCache, Pushed, PushResult, Rejected, Rejection
from bot.git.runner import GitError, GitResult, GitRunner, GitTimeout, Identity

__all__ = [
    "BuildResult",
    "Built",
    "CandidateBuilder",
    "Conflict",
    "GitError",
    "GitResult",
    "GitRunner",
    "GitTimeout",
    "Identity",
    "Mirror",
    "MirrorCache",
    "NothingToMerge",
    "PushResult",
    "Pushed",
    "Rejected",
    "Rejection",
    "Signature",
    "git_date",
]
