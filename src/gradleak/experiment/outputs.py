"""Every path gradleak writes: checked before any work, written under a temporary name, renamed into place.

* A **run folder** is gradleak's own: it carries a marker file (:data:`MARKER`) listing the files
  gradleak wrote. ``overwrite`` replaces only a folder with that marker, and only the files it
  lists; a folder without it (the user's own) is refused untouched. A run is written into a
  staging folder and renamed into place at the end, so an interrupted or failed run leaves no
  half-written folder.
* A **single file** (a report, a database) is checked the same way (not under a file, not a
  folder, a name the file system accepts, a folder that can be written) and written to a
  temporary name, then renamed.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with RunFolder(root / "run", overwrite=False) as run:
    ...     _ = run.write_bytes("config.json", b"{}")
    ...     out = run.commit()
    >>> sorted(p.name for p in out.iterdir())
    ['.gradleak-run', 'config.json']
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from gradleak.core.errors import OutputExistsError, OutputPathError
from gradleak.core.version import __version__

MARKER = ".gradleak-run"
"""The file that identifies a folder gradleak made, listing the files it wrote there."""
STAGING = ".gradleak-tmp-"
NAME_MAX = 255
PATH_MAX = 4096


def check_path(path: str | Path, what: str) -> Path:
    """Refuse a path that cannot be created: empty, a NUL byte, a name or path too long, or one
    that runs through an existing file. Creates nothing; returns the path."""
    text = os.fspath(path)
    if not text or "\x00" in text:
        raise OutputPathError(f"{what} {text!r} is not a usable path; give a file-system path")
    out = Path(text).expanduser()
    for part in out.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise OutputPathError(f"{what} {text[:60]}...: the name {part[:40]!r}... is {len(os.fsencode(part))} "
                                  f"bytes long, more than the file system's {NAME_MAX}; choose a shorter name")
    if len(os.fsencode(str(out.absolute()))) > PATH_MAX:
        raise OutputPathError(f"{what} {text[:60]}... is longer than {PATH_MAX} bytes; choose a shorter path")
    for parent in out.absolute().parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputPathError(f"{what} {out} lies under {parent}, which is a file, not a folder; "
                                      "choose another path")
            break
    return out


def _first_existing(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.is_dir():
            return parent
    return Path("/")


def probe_writable(folder: Path, what: str, target: Path) -> None:
    """Create and remove a temporary file in ``folder``: the one honest test that it can be written."""
    probe = folder / f"{STAGING}{secrets.token_hex(4)}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputPathError(f"cannot write {what} {target}: {err.strerror or err} in {folder}; "
                              "choose a folder you can write") from None


def check_output_file(path: str | Path, *, overwrite: bool, what: str = "output file") -> Path:
    """Refuse an output file that exists (unless ``overwrite``), is a folder or cannot be written."""
    out = check_path(path, what)
    if out.is_dir():
        raise OutputExistsError(f"{what} {out} is a folder; give a file name, e.g. {out / 'report.html'}")
    if out.exists() or out.is_symlink():
        if not out.is_file():
            raise OutputExistsError(f"{what} {out} exists and is not a regular file; choose another path")
        if not overwrite:
            raise OutputExistsError(f"{what} {out} already exists; pass --overwrite to replace it, "
                                    "or choose another path")
    probe_writable(out.parent if out.parent.is_dir() else _first_existing(out), what, out)
    return out


def write_file(path: str | Path, data: bytes | str, *, overwrite: bool = True) -> None:
    """Write ``data`` to a temporary name next to ``path``, then rename it into place (atomic).

    Without ``overwrite`` an existing ``path`` is never replaced (:class:`OutputExistsError`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{STAGING}{secrets.token_hex(4)}-{target.name[:100]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails when target appeared meanwhile: nothing replaced
            except FileExistsError:
                raise OutputExistsError(f"{target} already exists; pass --overwrite to replace it") from None
    finally:
        tmp.unlink(missing_ok=True)


def read_marker(folder: Path) -> set[str] | None:
    """The files gradleak wrote in ``folder`` according to its marker, or ``None`` without a valid marker."""
    marker = folder / MARKER
    if not marker.is_file() or marker.is_symlink():
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return {f for f in files if f and "/" not in f and "\\" not in f and f not in (".", "..", MARKER)}


def write_marker(folder: Path, files: set[str] | list[str], kind: str = "run") -> None:
    """Mark ``folder`` as gradleak's, listing the files gradleak wrote there."""
    text = json.dumps({"gradleak": __version__, "kind": kind, "files": sorted(files),
                       "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1)
    write_file(folder / MARKER, text + "\n")


def _contents(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(STAGING))


def check_out_dir(path: str | Path, *, overwrite: bool, files: tuple[str, ...] = ()) -> Path:
    """Refuse an output folder gradleak may not write (creates nothing).

    A missing or empty folder is fine; a non-empty one needs ``overwrite`` *and* gradleak's
    marker; each of ``files`` that exists must be a regular file the marker lists.
    """
    out = check_path(path, "output folder")
    if not out.exists() and not out.is_symlink():
        return out
    if not out.is_dir():
        raise OutputExistsError(f"output path {out} exists and is not a folder; choose another --out")
    present = _contents(out)
    if not present:
        return out
    if not overwrite:
        raise OutputExistsError(f"output folder {out} already exists; pass --overwrite to replace its run "
                                "files, or choose another --out")
    listed = read_marker(out)
    if listed is None:
        raise OutputExistsError(
            f"--overwrite refused: {out} is not a gradleak run folder (it has no {MARKER} marker), so its "
            f"files ({', '.join(present[:4])}{', ...' if len(present) > 4 else ''}) may be yours and are left "
            "untouched; choose another --out")
    for name in files:
        target = out / name
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise OutputExistsError(f"--overwrite refused: {target} is not a regular file (a folder or a link); "
                                    "move it away or choose another --out")
        if target.exists() and name not in listed:
            raise OutputExistsError(f"--overwrite refused: {target} was not written by gradleak (the "
                                    f"{MARKER} marker does not list it); move it away or choose another --out")
    return out


def check_writable_out_dir(path: str | Path, *, overwrite: bool) -> Path:
    """:func:`check_out_dir`, then a probe file written in the folder (or its nearest existing
    parent): an unwritable place fails now, before any work."""
    out = check_out_dir(path, overwrite=overwrite)
    probe_writable(out if out.is_dir() else _first_existing(out), "output folder", out)
    return out


class RunFolder:
    """A run folder being written: checked and staged at once, moved into place by :meth:`commit`.

    Args:
        path: the run folder.
        overwrite: replace the files of an earlier run in a folder gradleak marked.
        files: the names this run may write (checked against what is there before any work).
    """

    def __init__(self, path: str | Path, *, overwrite: bool,
                 files: tuple[str, ...] = ("config.json", "metrics.json", "reconstruction.png",
                                           "tensors.safetensors")) -> None:
        self.path = check_out_dir(path, overwrite=overwrite, files=files)
        self.allowed, self.written = set(files), []  # type: ignore[var-annotated]
        self.in_place = self.path.is_dir()
        self.old = (read_marker(self.path) or set()) if self.in_place else set()
        self._created: list[Path] = []
        if not self.in_place:
            missing = [p for p in self.path.absolute().parents if not p.exists()]
            for parent in reversed(missing):
                try:
                    parent.mkdir()
                except FileExistsError:
                    continue
                except OSError as err:
                    self.discard()
                    raise OutputPathError(f"cannot create the run folder {self.path}: {err.strerror or err} "
                                          f"({parent}); choose another --out") from None
                self._created.append(parent)
        home = self.path if self.in_place else self.path.absolute().parent
        self.stage = home / f"{STAGING}{secrets.token_hex(6)}"
        try:
            self.stage.mkdir()
        except OSError as err:
            self.discard()
            raise OutputPathError(f"cannot write the run folder {self.path}: {err.strerror or err} in {home}; "
                                  "choose another --out") from None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, kind: Any, *exc: object) -> None:
        if kind is not None:
            self.discard()

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Stage one file (a name declared in ``files``)."""
        if name not in self.allowed:
            raise ValueError(f"run folder file {name!r} was not declared")
        target = self.stage / name
        target.write_bytes(data)
        self.written.append(name)
        return target

    def commit(self) -> Path:
        """Move the staged files into place (marker first in place, last for a new folder)."""
        new = set(self.written)
        if not self.in_place:
            write_marker(self.stage, new)
            try:
                os.rename(self.stage, self.path)
            except OSError as err:
                self.discard()
                raise OutputPathError(f"cannot move the run into {self.path}: {err.strerror or err}") from None
            return self.path
        write_marker(self.path, self.old | new)  # a crash from here on leaves only listed files
        for name in sorted(new):
            os.replace(self.stage / name, self.path / name)
        for name in sorted(self.old - new):
            stale = self.path / name
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()
        write_marker(self.path, new)
        shutil.rmtree(self.stage, ignore_errors=True)
        return self.path

    def discard(self) -> None:
        """Remove the staging folder and any parent folder this run created (nothing else)."""
        stage = getattr(self, "stage", None)
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        for parent in reversed(self._created):
            try:
                parent.rmdir()
            except OSError:
                break
        self._created = []
