"""The one output policy of every command that writes files (train, eval, upscale, zssr, degrade,
export, compare, prepare, ...).

- Output names are planned and checked before any computing (``check_targets``): no output may be
  an input (same file, not same spelling: links and relative paths included), no two outputs may
  share a name, and a file that exists and was not written by this run is never replaced unless
  the user says ``overwrite=true``.
- Every file is written atomically (``atomic_write``): to a temporary name in the same folder, then
  renamed into place, so a reader never sees half a file and a full disk leaves no 0-byte or
  partial file (``OutputError`` names the file in one line).
- Folders are claimed atomically (``claim_unique_dir``): ``mkdir`` either creates the folder or
  fails, so two commands started in the same second never share one. A claimed folder records who
  owns it (``OWNER_FILE``); ``check_owner`` refuses a folder that another command or run owns.

Low layer: imports nothing from the package but the standard library.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

OWNER_FILE = ".sr_run.json"  # who writes into a folder: {"command": ..., "started_at": ..., ...}
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class OutputError(ValueError):
    """An output the policy refuses, or one that could not be written; the message is one line that
    names the path and what to do."""


class WriteError(OutputError):
    """A write that failed while the command ran (a full disk, a read-only folder): exit status 1,
    where a refused plan (``OutputError``) is 2."""


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def same_file(a: str | Path, b: str | Path) -> bool:
    """``a`` and ``b`` are one file (or folder): resolved links, or the same inode where both exist."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return _key(a.resolve()) == _key(b.resolve())


def check_targets(
    targets: Iterable[str | Path], inputs: Iterable[str | Path] = (), overwrite: bool = False, key: str = "output",
    made_from: Sequence[str | Path] | None = None,
) -> None:
    """Refuse a plan of outputs before anything is computed (``OutputError``, one line):

    an output that is one of ``inputs``, two outputs with one name, or an output file that already
    exists (unless ``overwrite``: then it is replaced, atomically, but never when it is an input).
    ``key`` is the config key the user sets to change the outputs (named in the message);
    ``made_from`` (the input each target is made from, in order) names the two inputs of a collision.
    """
    is_input = _InputSet(inputs)
    seen: dict[str, int] = {}
    for i, target in enumerate(map(Path, targets)):
        src = is_input(target)
        if src is not None:
            raise OutputError(f"{key}: {target} is the input {src}: it would be overwritten; choose another {key}=")
        k = _key(target.resolve())
        if k in seen:
            both = f" (from {made_from[seen[k]]} and {made_from[i]})" if made_from else ""
            raise OutputError(f"{key}: two outputs would both be written to {target}{both}: rename an input, or "
                              "write them into separate folders")
        seen[k] = i
        if target.exists() and not overwrite:
            raise OutputError(f"{key}: {target} already exists and was not written by this run: move it, choose "
                              f"another {key}=, or pass overwrite=true to replace it")


class _InputSet:
    """``same_file`` against many inputs at once: their inodes and resolved names, looked up in
    sets (a folder of 10,000 images would otherwise take 10,000^2 comparisons)."""

    def __init__(self, inputs: Iterable[str | Path]) -> None:
        self.by_id: dict[tuple[int, int], Path] = {}
        self.by_name: dict[str, Path] = {}
        for src in map(Path, inputs):
            self.by_name.setdefault(_key(src.resolve()), src)
            try:
                st = src.stat()
                self.by_id.setdefault((st.st_dev, st.st_ino), src)
            except OSError:
                pass

    def __call__(self, target: Path) -> Path | None:
        try:
            st = target.stat()
            found = self.by_id.get((st.st_dev, st.st_ino))
            if found is not None:
                return found
        except OSError:
            pass
        return self.by_name.get(_key(target.resolve()))


def disk_error(path: str | Path, error: OSError) -> WriteError:
    """``error`` while writing ``path`` as one line (disk full, read-only, no permission, ...)."""
    if error.errno in _DISK_FULL:
        return WriteError(f"{path}: no space left on the device; nothing partial was left behind (free some space "
                           "and run again)")
    reason = error.strerror or str(error)
    return WriteError(f"{path}: cannot be written ({reason}); choose another output folder")


@contextmanager
def atomic_write(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that pick a format by the
    suffix still work); on success it is renamed to ``path``, on any error it is removed.

    ``overwrite=False`` refuses to replace a file that appeared meanwhile (``OutputError``). An
    ``OSError`` from the writer or the rename (a full disk, a read-only folder) becomes one line
    (``OutputError``) with nothing left behind; an existing ``path`` is then unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{time.monotonic_ns()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _fsync(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except OSError as e:
        raise disk_error(path, e) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _link_new(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path`` only if ``path`` does not exist (a hard link fails if it does)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputError(f"{path} appeared while it was being written (another command?): it was left as it is; "
                          "choose another output") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if path.exists():  # a file system without hard links: check, then rename
            raise OutputError(f"{path} appeared while it was being written: it was left as it is") from None
        os.replace(tmp, path)


def write_text(path: str | Path, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (see ``atomic_write``)."""
    with atomic_write(path, overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_write``)."""
    with atomic_write(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def claim_unique_dir(path: str | Path) -> Path:
    """Create ``path``, or ``path_1``, ``path_2`` ... if taken: ``mkdir`` is atomic, so two commands
    started in the same second get two folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for i in range(10_000):
        candidate = path if i == 0 else path.with_name(f"{path.name}_{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise OutputError(f"no free folder next to {path}: choose another output folder")


def read_owner(folder: str | Path) -> dict[str, Any] | None:
    """The owner record of ``folder`` (None when it has none or it is unreadable)."""
    try:
        record = json.loads((Path(folder) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_owner(folder: str | Path, command: str, **fields: Any) -> None:
    """Mark ``folder`` as written by ``command`` (kept fields of an earlier record of the same command)."""
    folder = Path(folder)
    record = {**(read_owner(folder) or {}), "command": command, **fields}
    record.setdefault("started_at", round(time.time(), 3))
    write_text(folder / OWNER_FILE, json.dumps(record))


def check_owner(folder: str | Path, command: str, key: str = "hydra.run.dir") -> None:
    """Refuse ``folder`` when another command owns it (a training run's folder for eval, say).

    Records written before ``command`` was recorded are training runs' (train.py wrote them first).
    """
    folder = Path(folder)
    owner = read_owner(folder)
    if owner is not None and owner.get("command", "train") != command:
        raise OutputError(f"{key}={folder} belongs to a {owner.get('command', 'train')} run: its files would be "
                          f"mixed with this {command}'s; choose another folder")


def check_output_folder(folder: str | Path, command: str, inputs: Iterable[str | Path] = (), key: str = "output") -> None:
    """Refuse, before anything is computed, an output folder that is an input folder (links
    included), or that holds another command's run (``check_owner``, or a Hydra run's ``.hydra``
    folder: the commands that write files into a plain folder never make one)."""
    folder = Path(folder)
    for src in map(Path, inputs):
        if src.is_dir() and same_file(folder, src):
            raise OutputError(f"{key}={folder} is the input folder {src}: outputs would be mixed with (or "
                              f"written over) the inputs; choose another {key}=")
    check_owner(folder, command, key)
    if (folder / ".hydra").is_dir():
        raise OutputError(f"{key}={folder} holds a Hydra run (.hydra/): its files would be mixed with this "
                          f"{command}'s; choose another folder")


def check_writable_folder(folder: str | Path, key: str = "output") -> None:
    """Create ``folder`` and a scratch file in it: a bad output folder fails (``OutputError``, one
    line) before anything is computed."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OutputError(f"{key}={folder} is not a writable folder ({e.strerror or e}); choose another {key}=") from None
