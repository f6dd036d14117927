"""The one place that runs git for the simulator (bare repositories, plumbing only, timeouts that kill)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

ZERO_SHA = "0" * 40
GIT_TIMEOUT_S = 30.0


class GitError(Exception):
    def __init__(self, args: list[str], code: int, out: str, err: str) -> None:
        super().__init__(f"git {' '.join(args)} exited {code}: {err.strip() or out.strip()}")
        self.code = code
        self.out = out
        self.err = err


@dataclass(frozen=True)
class Ident:
    name: str
    email: str
    date: str = ""  # git date format; empty = now


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parents: list[str]
    tree: str
    author: Ident
    committer: Ident
    message: str
    added: list[str]
    removed: list[str]
    modified: list[str]


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    return env


async def run_git(args: list[str], *, cwd: Path | None = None, stdin: bytes | None = None,
                  env: dict[str, str] | None = None, check: bool = True,
                  time_limit_s: float = GIT_TIMEOUT_S) -> tuple[int, str, str]:
    code, out_b, err = await run_git_bytes(args, cwd=cwd, stdin=stdin, env=env, check=False,
                                           time_limit_s=time_limit_s)
    out = out_b.decode(errors="replace")
    if check and code != 0:
        raise GitError(args, code, out, err)
    return code, out, err


async def run_git_bytes(args: list[str], *, cwd: Path | None = None, stdin: bytes | None = None,
                        env: dict[str, str] | None = None, check: bool = True,
                        time_limit_s: float = GIT_TIMEOUT_S) -> tuple[int, bytes, str]:
    """run_git with stdout as bytes (blob contents)."""
    full_env = _base_env()
    if env:
        full_env.update(env)
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=str(cwd) if cwd else None, env=full_env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out_b, err_b = await asyncio.wait_for(proc.communicate(stdin), time_limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GitError(args, -9, "", f"timed out after {time_limit_s}s") from None
    code = proc.returncode if proc.returncode is not None else -1
    err = err_b.decode(errors="replace")
    if check and code != 0:
        raise GitError(args, code, out_b.decode(errors="replace"), err)
    return code, out_b, err


@dataclass(frozen=True)
class TreeEntry:
    mode: str  # 100644, 100755, 120000 (symlink), 040000 (tree), 160000 (submodule)
    kind: str  # blob, tree, commit
    sha: str
    size: int  # 0 for trees and submodules
    path: str  # from the root of the tree

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _tree_entries(out: str, parent: str) -> list[TreeEntry]:
    found = []
    for line in out.split("\0"):
        if not line:
            continue
        meta, name = line.split("\t", 1)
        mode, kind, sha, size = meta.split()
        path = f"{parent}/{name}" if parent else name
        found.append(TreeEntry(mode, kind, sha, int(size) if size.isdigit() else 0, path))
    return found


class GitRepo:
    """A bare repository on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def git(self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
                  check: bool = True) -> str:
        _, out, _ = await run_git(["-C", str(self.path), *args], stdin=stdin, env=env, check=check)
        return out

    async def init(self, default_branch: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await run_git(["init", "--bare", "--quiet", f"--initial-branch={default_branch}", str(self.path)])
        await self.configure()

    async def configure(self) -> None:
        """The server-side settings every simulated repository has (pushes over HTTP, any SHA fetchable)."""
        for key, value in (("http.receivepack", "true"), ("receive.denyNonFastForwards", "false"),
                           ("uploadpack.allowAnySHA1InWant", "true"), ("core.logAllRefUpdates", "false"),
                           ("gc.auto", "0")):
            await self.git("config", key, value)

    async def resolve(self, rev: str) -> str | None:
        code, out, _ = await run_git(["-C", str(self.path), "rev-parse", "--verify", "--quiet",
                                      f"{rev}^{{commit}}"], check=False)
        return out.strip() if code == 0 else None

    async def branch_sha(self, branch: str) -> str | None:
        return await self.resolve(f"refs/heads/{branch}")

    async def branches(self) -> dict[str, str]:
        out = await self.git("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
        result: dict[str, str] = {}
        for line in out.splitlines():
            sha, ref = line.split(" ", 1)
            result[ref.removeprefix("refs/heads/")] = sha
        return result

    async def update_ref(self, ref: str, new: str, old: str | None = None) -> bool:
        """Compare-and-swap a ref; `old` = ZERO_SHA means "must not exist". False if it moved meanwhile."""
        args = ["update-ref", ref, new] + ([old] if old is not None else [])
        code, _, _ = await run_git(["-C", str(self.path), *args], check=False)
        return code == 0

    async def delete_ref(self, ref: str, old: str | None = None) -> bool:
        args = ["update-ref", "-d", ref] + ([old] if old is not None else [])
        code, _, _ = await run_git(["-C", str(self.path), *args], check=False)
        return code == 0

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        code, _, _ = await run_git(["-C", str(self.path), "merge-base", "--is-ancestor", ancestor, descendant],
                                   check=False)
        return code == 0

    async def merge_base(self, a: str, b: str) -> str | None:
        code, out, _ = await run_git(["-C", str(self.path), "merge-base", a, b], check=False)
        return out.strip() if code == 0 else None

    async def merge_tree(self, ours: str, theirs: str) -> tuple[str | None, list[str]]:
        """Three-way merge in memory: (tree, []) when clean, (None, conflicted paths) otherwise."""
        code, out, err = await run_git(["-C", str(self.path), "merge-tree", "--write-tree", "--name-only",
                                        "--no-messages", ours, theirs], check=False)
        lines = out.splitlines()
        if code == 0:
            return lines[0].strip(), []
        if code == 1:
            return None, sorted({line for line in lines[1:] if line})
        raise GitError(["merge-tree", ours, theirs], code, out, err)

    async def commit_tree(self, tree: str, parents: list[str], message: str, author: Ident,
                          committer: Ident) -> str:
        env = {"GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email,
               "GIT_COMMITTER_NAME": committer.name, "GIT_COMMITTER_EMAIL": committer.email}
        if author.date:
            env["GIT_AUTHOR_DATE"] = author.date
        if committer.date:
            env["GIT_COMMITTER_DATE"] = committer.date
        args = ["commit-tree", tree]
        for p in parents:
            args += ["-p", p]
        out = await self.git(*args, stdin=message.encode(), env=env)
        return out.strip()

    async def tree_of(self, rev: str) -> str:
        return (await self.git("rev-parse", f"{rev}^{{tree}}")).strip()

    async def rev_list(self, *args: str) -> list[str]:
        out = await self.git("rev-list", *args)
        return [line for line in out.splitlines() if line]

    async def commits(self, *rev_args: str, max_count: int = 0) -> list[CommitInfo]:
        """Commit details (newest first) with the files each one touched."""
        fmt = "%x1e%H%x1f%P%x1f%T%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%B%x1f"
        args = ["log", f"--format={fmt}", "--name-status", "--no-renames"]
        if max_count:
            args.append(f"--max-count={max_count}")
        out = await self.git(*args, *rev_args, "--")
        result: list[CommitInfo] = []
        for chunk in out.split("\x1e")[1:]:
            parts = chunk.split("\x1f")
            sha, parents, tree, an, ae, ad, cn, ce, cd, msg, files = parts[:11]
            added: list[str] = []
            removed: list[str] = []
            modified: list[str] = []
            for line in files.splitlines():
                if "\t" not in line:
                    continue
                st, path = line.split("\t", 1)
                {"A": added, "D": removed}.get(st[:1], modified).append(path)
            result.append(CommitInfo(sha, parents.split(), tree, Ident(an, ae, ad), Ident(cn, ce, cd), msg,
                                     added, removed, modified))
        return result

    async def tree_entry(self, commit: str, path: str) -> TreeEntry | None:
        """The entry at `path` in `commit`'s tree (a file, directory, symlink or submodule), or None."""
        code, out, _ = await run_git(["-C", str(self.path), "ls-tree", "-l", "-z", "--full-tree", commit, "--",
                                      path], check=False)
        found = [e for e in _tree_entries(out, "") if e.path == path] if code == 0 else []
        return found[0] if found else None

    async def list_tree(self, commit: str, path: str = "") -> list[TreeEntry]:
        """The entries of the directory `path` ("" for the root), in git's order."""
        rev = f"{commit}:{path}" if path else commit
        out = await self.git("ls-tree", "-l", "-z", rev)
        return _tree_entries(out, path)

    async def blob(self, sha: str) -> bytes:
        _, out, _ = await run_git_bytes(["-C", str(self.path), "cat-file", "blob", sha])
        return out

    async def last_commit(self, commit: str, path: str) -> tuple[str, str, str] | None:
        """(sha, committer date, author date) of the last commit before `commit` that touched `path`."""
        out = await self.git("log", "-1", "--format=%H%x1f%cI%x1f%aI", commit, "--", path or ".")
        parts = out.strip().split("\x1f")
        return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None

    async def commit(self, sha: str) -> CommitInfo | None:
        if await self.resolve(sha) is None:
            return None
        found = await self.commits("--no-walk", sha, max_count=1)
        return found[0] if found else None

    async def write_initial_commit(self, branch: str, files: dict[str, str], message: str, who: Ident) -> str:
        entries = []
        for name, content in files.items():
            blob = (await self.git("hash-object", "-w", "--stdin", stdin=content.encode())).strip()
            entries.append(f"100644 blob {blob}\t{name}\n")
        tree = (await self.git("mktree", stdin="".join(entries).encode())).strip()
        sha = await self.commit_tree(tree, [], message, who, who)
        await self.update_ref(f"refs/heads/{branch}", sha, ZERO_SHA)
        return sha
