"""Files and directories written so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def open_atomic(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """A file to write that becomes ``path`` only if the block completes (``"w"`` for text
    in UTF-8, ``"wb"`` for bytes); a crash or an error leaves any old ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes files private; results and data are not
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    with open_atomic(path, "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def staging_path(path: str | os.PathLike[str]) -> Path:
    """The hidden sibling in which the directory ``path`` is assembled before ``replace_dir``
    swaps it in; the same name in every process, so that several can write into it."""
    path = Path(path)
    return path.with_name(f".{path.name}.saving")


def _backup_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.previous")


def replace_dir(staging: Path, path: str | os.PathLike[str]) -> None:
    """Put the finished directory ``staging`` at ``path``. An old ``path`` is kept as a backup
    until the swap is done, so a crash at any point leaves one of the two whole."""
    path = Path(path)
    backup = _backup_path(path)
    if path.exists():
        shutil.rmtree(backup, ignore_errors=True)
        path.rename(backup)
    staging.rename(path)
    shutil.rmtree(backup, ignore_errors=True)


def saved_dir(path: str | os.PathLike[str]) -> Path:
    """The directory to read for ``path``: itself, or the old one a swap cut off midway
    (``replace_dir``) left as its backup."""
    path = Path(path)
    backup = _backup_path(path)
    return backup if not path.is_dir() and backup.is_dir() else path


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """An empty directory to fill that becomes ``path`` only if the block completes; a crash
    or an error leaves any old ``path`` as it was."""
    staging = staging_path(path)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        replace_dir(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON in ``path``, None where there is no such file."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None
