"""The bot's git layer: one runner, cached bare mirrors, and worktree-free candidate builds."""

from bot.git.candidates import (
    Broken,
    BuildResult,
    Built,
    CandidateBuilder,
    Chain,
    Conflict,
    Link,
    NothingToMerge,
    Piece,
    Signature,
    git_date,
)
from bot.git.mirror import Mirror, MirrorCache, Pushed, PushResult, Rejected, Rejection
from bot.git.runner import GitError, GitResult, GitRunner, GitTimeout, Identity

__all__ = [
    "Broken",
    "BuildResult",
    "Built",
    "CandidateBuilder",
    "Chain",
    "Conflict",
    "GitError",
    "GitResult",
    "GitRunner",
    "GitTimeout",
    "Identity",
    "Link",
    "Mirror",
    "MirrorCache",
    "NothingToMerge",
    "Piece",
    "PushResult",
    "Pushed",
    "Rejected",
    "Rejection",
    "Signature",
    "git_date",
]
