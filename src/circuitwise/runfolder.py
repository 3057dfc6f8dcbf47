"""Output folders that are always whole: staged writes, swapped in at the end, under a lock.

A command writes into ``.<name>.partial`` beside its output folder ``<name>`` and, once every
file is there, swaps the two (one atomic ``renameat2(RENAME_EXCHANGE)`` on Linux, two renames
elsewhere). So ``<name>`` only ever holds a previous complete result or the new one. A failed or
interrupted command leaves ``<name>`` untouched and its finished work (patching checkpoints) in
the partial folder, which the next run of the same command resumes from. ``.<name>.lock`` beside
them (a ``filelock`` lock, so it works on Windows too) lets one process at a time write there; a
second one is refused with a clear message naming the holder's pid, kept in ``.<name>.lock.pid``
while the lock is held.
Files already in the folder (the user's notes, the circuit an ``evaluate`` re-checks) are carried
over into the new version as hard links, so they are kept without being copied.

Each folder records the command that wrote it and that command's settings in ``.circuitwise.json``
(``complete: false`` while staged, ``true`` once swapped in). A command refuses, before any work, a
folder another command wrote (their files would mix), and a complete folder of its own written with
other settings unless given ``--force`` (a result is never replaced silently); a staged folder of
the same command resumes.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from filelock import FileLock, Timeout

from circuitwise.errors import CircuitwiseError, FolderBusyError, Interrupted, OutputError, WriteFailed
from circuitwise.types import nan_to_none

# What circuitwise commands write into an output folder; anything else means the folder is the
# user's, and replacing it whole would take their files with it.
OURS = frozenset({"report.html", "results.json", "config.yaml", "circuit.json", "scores.json",
                  "evaluation.json", "circuit.html", "patching.json", ".patching",
                  "compare.html", "compare.json", "circuit_a.json", "circuit_b.json",
                  "benchmark.json", "benchmark.html", ".circuitwise.json"})
# Who wrote a folder: {"command", "settings", "complete"}; read before any work, written with the files.
MARKER = ".circuitwise.json"
# Folders written before the marker existed are told apart by their files (first match wins: a run
# folder may also hold a patch's patching.json).
FILES_OF = (("run", frozenset({"results.json", "report.html"})),
            ("compare", frozenset({"compare.json", "compare.html"})),
            ("benchmark", frozenset({"benchmark.json", "benchmark.html"})),
            ("circuit", frozenset({"circuit.json", "scores.json", "evaluation.json", "circuit.html"})),
            ("patch", frozenset({"patching.json"})))
CHECKPOINTS = ".patching"
MAX_FOREIGN_FILES = 10
# OSErrors that mean "cannot write here"; others inside a run are bugs and keep their traceback.
# Windows has no EDQUOT: a quota there reads as a full disk.
EDQUOT = getattr(errno, "EDQUOT", errno.ENOSPC)
WRITE_ERRNOS = frozenset({errno.ENOSPC, EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})


def output_error(e: OSError, path: Path | str, doing: str = "write") -> WriteFailed:
    """An OSError while writing ``path`` as a CircuitwiseError that says what to do."""
    code = e.errno
    if code in (errno.ENOSPC, EDQUOT):
        fix = "The disk (or quota) is full: free some space, or choose --out on another disk."
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "It is not writable by you: choose a folder you can write to with --out."
    elif code in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
        fix = "Something in the way is a file, not a folder (or the reverse): choose another --out."
    else:
        fix = "Choose another --out folder."
    return WriteFailed(f"Cannot {doing} {path}: {e.strerror or e}. {fix}")


def atomic_write_text(path: Path, text: str | bytes) -> Path:
    """Write ``text`` (or bytes, as they are) to ``path`` through a uniquely named temporary file and a rename.

    The rename also matters for hard-linked files carried over from an earlier run: writing in
    place would change the earlier run's copy too.
    """
    path = Path(path)
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; results are as readable as any file
        os.replace(tmp_name, path)
    except OSError as e:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
        raise output_error(e, path) from None
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, data: Any, *, indent: int | None = 1) -> Path:
    """Strict JSON (NaN and ±inf become null), written atomically."""
    return atomic_write_text(path, json.dumps(nan_to_none(data), indent=indent, allow_nan=False))


class RunFolder:
    """``with RunFolder(out, replaces={...}) as rf:`` write into ``rf.path``, then ``rf.commit()``.

    ``replaces`` names the files this command writes; those of the previous version are not
    carried over, so a file the new run does not produce cannot linger beside its results.
    """

    def __init__(self, out: Path | str, *, replaces: Iterable[str] = (), command: str | None = None,
                 settings: dict[str, Any] | None = None, force: bool = False, in_place: bool = False):
        # Absolute, so `--out .` has a name and a parent to stage beside (symlinks are kept as given).
        self.out = Path(os.path.abspath(out))
        self.replaces = frozenset(replaces)
        self.staging = self.out.parent / f".{self.out.name}.partial"
        self.lock_path = self.out.parent / f".{self.out.name}.lock"
        # The holder's pid sits beside the lock, not in it: filelock may truncate the lock file
        # when another process tries it, and Windows forbids reading a locked file.
        self.pid_path = self.out.parent / f".{self.out.name}.lock.pid"
        self._lock: FileLock | None = None
        self._remove_lock_file = False
        # Written in place, pair by pair (mark_in_place), instead of staged and swapped in whole.
        self.in_place = in_place
        self._had = self._existed = True  # whether out held anything, or was there at all, before this command
        self._staged = False
        self.committed = False
        self.command: str | None = None
        self.settings: Any = None
        self.force = False
        self.joins: frozenset[str] = frozenset()
        self._kept_mark: dict[str, Any] | None = None
        self._discard_partial = False  # --force over an unfinished folder of other settings
        self.resumed = 0  # finished parts of an interrupted run of this command this one picks up (__enter__)
        if command is not None:
            self.for_command(command, settings, force=force)

    def for_command(self, command: str, settings: dict[str, Any] | None = None, *, force: bool = False,
                    joins: Iterable[str] = ()) -> RunFolder:
        """Record ``command`` (and its result-defining ``settings``) as this folder's writer.

        :meth:`check` then refuses another command's folder, and a complete folder of this command
        with other settings unless ``force``. ``joins``: commands whose folder this one may add to
        (``evaluate`` re-checking a circuit folder's own circuit.json); the folder stays theirs.
        """
        self.command = command
        # Through JSON, so the settings compare equal to those read back from the marker.
        self.settings = json.loads(json.dumps(nan_to_none(settings or {}), default=str, sort_keys=True))
        self.force = force
        self.joins = frozenset(joins)
        return self

    # ---- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> RunFolder:
        self.check()
        # What was there before this command (an in-place folder's failure message depends on it).
        self._existed = self.out.exists()
        self._had = self._existed and self.out.is_dir() and any(self.out.iterdir())
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            lock = self._acquire()
        except Timeout:
            self._check_writable()  # filelock reads a lock file it cannot create as one held by another
            try:
                holder = self.pid_path.read_text(encoding="utf-8").strip()
            except OSError:
                holder = ""
            raise FolderBusyError(
                f"Another circuitwise command (pid {holder or 'unknown'}) is writing to {self.out}. Wait for it "
                "to finish, or give this one another --out folder.") from None
        except OSError as e:
            # The lock and the staging folder live beside --out, so its parent must be writable too.
            raise output_error(e, self.lock_path, "create") from None
        self._lock = lock
        try:
            self.pid_path.write_text(str(os.getpid()), encoding="utf-8")
        except OSError as e:
            self._unlock()
            raise output_error(e, self.pid_path, "create") from None
        self.resumed = 0 if self._discard_partial or self.in_place else _count_files(self.staging / CHECKPOINTS)
        return self

    def resume_note(self) -> str | None:
        """Said as the command starts, where it picks up an interrupted run's finished work (else None)."""
        if not self.resumed:
            return None
        # "Where they match": parts are named by their batch of prompts, and the batch size (not a setting
        # of the results) may differ from the interrupted run's; a part of another batch is computed again.
        return (f"resuming: an interrupted run of the same settings left {self.resumed:,} finished "
                f"part{'s' if self.resumed != 1 else ''} in {self.staging}; those this run's batches match are "
                "reused, not computed again")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        try:
            if exc is None or self.committed:
                return False
            kept = self.kept_message(exc)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(kept) from None
            if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
                err = output_error(exc, getattr(exc, "filename", None) or self.staging)
                err.add_note(kept)
                raise err from None
            if isinstance(exc, Exception):
                exc.add_note(kept)
            return False
        finally:
            self._unlock()

    def kept_message(self, exc: BaseException | None = None) -> str:
        """What the failure ``exc`` left in place, and how to go on."""
        if self.in_place:
            written = self.out.is_dir() and any(p.name != MARKER for p in self.out.iterdir())
            if not written and not self._had:
                # This command wrote nothing but its marker: it leaves no trace (nor a folder it made).
                (self.out / MARKER).unlink(missing_ok=True)
                if not self._existed:
                    shutil.rmtree(self.out, ignore_errors=True)
                return f"Nothing was written to {self.out}."
            if _refused(exc):
                # The same command would be refused the same way: its message says the fix, not a resume.
                return f"What {self.out} holds is kept."
            return (f"What {self.out} holds is kept; re-run the same command to resume (finished work is not "
                    "done again).")
        before = (f"The previous complete result in {self.out} is untouched."
                  if self.out.is_dir() and any(self.out.iterdir()) else f"Nothing was written to {self.out}.")
        if self._staged and self.staging.exists():
            # A re-run keeps only the checkpoints of the staged folder (_stage): without one there is nothing
            # to resume from, and a folder left holding just the marker would be a false promise.
            ckpt = self.staging / CHECKPOINTS
            if ckpt.is_dir() and any(p.is_file() for p in ckpt.rglob("*")):
                return (f"{before} Finished work is kept in {self.staging}; re-run the same command to resume "
                        "from it.")
            shutil.rmtree(self.staging, ignore_errors=True)
        return before

    def _acquire(self) -> FileLock:
        """The lock, held on the file that is at ``lock_path`` now.

        The lock file is removed on release (a refused or failed command leaves nothing behind), so a
        second process may have locked a file the first had just removed: that lock guards nothing,
        and is taken again on the file now at the path.
        """
        for _ in range(5):
            fds: list[int] = []
            lock = FileLock(self.lock_path, timeout=0, on_acquired=fds.append)
            lock.acquire()
            if not fds:  # a soft lock (no flock here): filelock removes its file itself
                return lock
            try:
                held, there = os.fstat(fds[-1]), os.stat(self.lock_path)
                if (held.st_ino, held.st_dev) == (there.st_ino, there.st_dev):
                    self._remove_lock_file = True
                    return lock
            except FileNotFoundError:
                pass
            lock.release(force=True)
        raise Timeout(str(self.lock_path))

    def _check_writable(self) -> None:
        try:
            fd, name = tempfile.mkstemp(dir=self.out.parent, prefix=f".{self.out.name}.", suffix=".tmp")
            os.close(fd)
            os.unlink(name)
        except OSError as e:
            # The lock and the staging folder live beside --out, so its parent must be writable too.
            raise output_error(e, self.lock_path, "create") from None

    def _unlock(self) -> None:
        if self._lock is not None:
            self.pid_path.unlink(missing_ok=True)  # before the release: a new holder writes its own
            if self._remove_lock_file:
                # Removed while still held (see _acquire), so no lock file outlives the command.
                try:
                    self.lock_path.unlink(missing_ok=True)
                except OSError:
                    pass  # Windows: filelock removes it on release itself
                self._remove_lock_file = False
            self._lock.release(force=True)
            self._lock = None

    # ---- checks -----------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse, before any work, an --out that is a file or a folder of someone else's files."""
        out = self.out
        if not out.name:
            raise OutputError(f"--out {out} is the root folder; give a folder for this run's files.")
        cwd = Path(os.path.abspath(os.getcwd()))
        if cwd == out or out in cwd.parents:
            # The folder is replaced whole on success, which would pull it out from under the shell.
            raise OutputError(f"--out {out} is (or holds) the current folder. Give a subfolder, "
                              "e.g. --out runs/latest.")
        try:
            out.exists()
        except OSError as e:  # a name too long for the file system (ENAMETOOLONG)
            raise output_error(e, out, "use") from None
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {out} is a file, not a folder. Choose a folder path (it is created if needed).")
        # A file where a folder above --out would be created: found now, not when the lock is taken (graph and
        # transcoders train printed their plan and read their inputs first).
        above = out.parent
        while not above.exists() and above != above.parent:
            above = above.parent
        if not above.is_dir():
            raise OutputError(f"--out {out} lies under {above}, which is a file, not a folder. Choose another --out.")
        if out.is_dir():
            try:
                names = [p.name for p in out.iterdir()]
            except OSError as e:
                raise output_error(e, out, "read the output folder") from None
            foreign = sorted(n for n in names if n not in OURS and not n.endswith(".tmp"))
            # A few loose files (the user's notes) are carried into each new version; a folder with
            # subfolders or many files of its own is somebody's work, never to be swapped away.
            # A command that writes its own layout in place (`mib`: a folder per method) owns those folders;
            # a staged command's folder never holds subfolders of its own, so theirs stay refused.
            writer = (read_marker(out) or {}).get("command")
            if self.command is not None and writer is not None and writer != self.command and writer not in self.joins:
                self._check_writer()  # another command's folder: refused naming that command, not as unknown files
            own_layout = self.in_place and writer == self.command
            # This command's own folder holds its own loose files (an export's figures), however many.
            many = len(foreign) > MAX_FOREIGN_FILES and writer != self.command
            if not own_layout and (any((out / n).is_dir() for n in foreign) or many):
                raise OutputError(
                    f"--out {out} holds files circuitwise did not write ({', '.join(foreign[:3])}"
                    f"{', …' if len(foreign) > 3 else ''}). A run replaces its output folder whole when it "
                    "completes, so give a new or empty folder (or one an earlier circuitwise run wrote).")
        if self.command is not None:
            self._check_writer()

    def _held(self) -> bool:
        """Whether a live process holds the lock now (its work in progress is refused as busy, exit 4,
        when the lock is taken, not judged as an interrupted run's)."""
        try:
            pid = int(self.pid_path.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return False
        if pid == os.getpid():
            return False
        if os.name == "nt":
            return True  # os.kill(pid, 0) would send Ctrl-C there; the lock itself then decides
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True  # alive, owned by another user
        return True

    def _check_writer(self) -> None:
        """Refuse another command's folder, and replacing a complete result of other settings without --force."""
        for where, complete in ((self.out, True), (self.staging, False)):
            if not where.is_dir():
                continue
            mark = read_marker(where)
            writer = mark.get("command") if mark else (_writer_by_files(where) if complete else None)
            if writer is None:
                continue  # empty, the user's notes only, or a staged folder of checkpoints only
            if writer != self.command and writer not in self.joins:
                what = "holds" if complete else "holds the unfinished work (in " + where.name + ") of"
                raise OutputError(
                    f"--out {self.out} {what} the results of `circuitwise {writer}`; `circuitwise {self.command}` "
                    f"never writes into another command's folder (their files would mix). Give this one another "
                    f"--out, e.g. --out {self.out.parent / str(self.command).replace(' ', '-')}.")
            if writer != self.command:
                self._kept_mark = mark  # adding to a folder of `writer`: it stays theirs
                continue
            if not complete and mark is not None and mark.get("settings") != self.settings and not self._held():
                # An interrupted run of other settings (another model, task, metric …): its checkpoints
                # are keyed by model fingerprint and settings, so nothing would mix, but resuming it is
                # not what the user asked for and its work would only lie there.
                if not self.force:
                    raise OutputError(
                        f"--out {self.out} holds the unfinished work (in {where.name}) of `circuitwise {writer}` "
                        f"with other settings ({_differences(mark.get('settings'), self.settings)}); it resumes "
                        "only with the same settings. Re-run with those to resume it, add --force to discard it "
                        "and start over, or give another --out.")
                self._discard_partial = True
                continue
            if complete and not self.force and (mark is None or mark.get("settings") != self.settings):
                if mark is None:
                    why = "written by an earlier circuitwise that did not record its settings"
                else:
                    why = f"with other settings ({_differences(mark.get('settings'), self.settings)})"
                raise OutputError(
                    f"--out {self.out} holds a complete `circuitwise {writer}` result {why}; this run would "
                    "replace it. Give another --out to keep it, or add --force to replace it.")

    # ---- staging ----------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The staging folder to write into (made, and the previous version carried over, on first use)."""
        if not self._staged:
            self._stage()
        return self.staging

    def _stage(self) -> None:
        try:
            if self.staging.exists() and not self.staging.is_dir():
                self.staging.unlink()
            self.staging.mkdir(exist_ok=True)
            # A partial folder left by a failed run keeps only its checkpoints: every other file in
            # it is rewritten by this run or carried over afresh from the complete version.
            for p in self.staging.iterdir():
                if p.name != CHECKPOINTS or self._discard_partial:
                    _remove(p)
            if self.out.is_dir():
                for p in self.out.iterdir():
                    if p.name in self.replaces or p.name == MARKER or p.name.endswith(".tmp"):
                        continue
                    _link_tree(p, self.staging / p.name)
        except OSError as e:
            raise output_error(e, self.staging, "prepare the staging folder") from None
        self._staged = True
        # Marked from the start, so an interrupted folder is known as this command's (and resumed by it).
        self._write_marker(complete=False)

    def _write_marker(self, *, complete: bool) -> None:
        if self.command is None:
            return
        mark = (dict(self._kept_mark, complete=complete) if self._kept_mark is not None
                else {"command": self.command, "settings": self.settings, "complete": complete})
        atomic_write_json(self.staging / MARKER, mark)

    def mark_in_place(self, *, complete: bool) -> None:
        """Record this command as the writer of ``out`` itself, for a command that writes its files there
        directly, pair by pair (``mib``: resumable without a staged copy; the lock still guards it)."""
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.out / MARKER, {"command": self.command, "settings": self.settings,
                                              "complete": complete})

    def write_text(self, name: str, text: str | bytes) -> Path:
        return atomic_write_text(self.path / name, text)

    def write_json(self, name: str, data: Any, *, indent: int | None = 1) -> Path:
        return atomic_write_json(self.path / name, data, indent=indent)

    def commit(self) -> Path:
        """Swap the staged folder in as ``out``; the previous version is removed."""
        staging = self.path
        self._write_marker(complete=True)  # last into the staged folder: it is whole now
        old: Path | None = None
        try:
            if not self.out.exists():
                os.rename(staging, self.out)
            elif _exchange(staging, self.out):
                old = staging
            else:
                old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
                os.rename(self.out, old)
                try:
                    os.rename(staging, self.out)
                except OSError:
                    os.rename(old, self.out)  # put the previous version back before reporting
                    raise
        except OSError as e:
            raise output_error(e, self.out, "replace") from None
        # From here the new version is in place, whatever happens to the cleanup.
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out


def _refused(exc: BaseException | None) -> bool:
    """Whether ``exc`` is circuitwise refusing (the input, the folder's contents): the same command would
    meet it again, unlike an interrupt or a failed write, from which it resumes."""
    return isinstance(exc, CircuitwiseError) and not isinstance(exc, (Interrupted, WriteFailed))


def _count_files(folder: Path) -> int:
    try:
        return sum(1 for p in folder.rglob("*.safetensors") if p.is_file()) if folder.is_dir() else 0
    except OSError:
        return 0


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The writer recorded in ``folder`` (None: none recorded, or unreadable, as in older folders)."""
    try:
        mark = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) and isinstance(mark.get("command"), str) else None


def _writer_by_files(folder: Path) -> str | None:
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return None
    return next((command for command, files in FILES_OF if names & files), None)


def _differences(before: Any, now: Any) -> str:
    """The settings that differ, as `name: before -> now` (at most 4 named)."""
    if not isinstance(before, dict):
        return "unknown before"
    keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    parts = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in keys[:4]]
    return "; ".join(parts) + ("; …" if len(keys) > 4 else "")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink(missing_ok=True)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link ``src`` (a file or folder) to ``dst``; files already at ``dst`` are kept."""
    if src.is_dir():
        dst.mkdir(exist_ok=True)
        for child in src.iterdir():
            _link_tree(child, dst / child.name)
        return
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:  # another file system or no hard links: copy instead
        shutil.copy2(src, dst)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no process-wide CDLL(None)
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


__all__ = ["MARKER", "OURS", "RunFolder", "atomic_write_json", "atomic_write_text", "output_error", "read_marker"]
