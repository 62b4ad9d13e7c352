"""Where recordings' files live: the `RecordingStorage` interface and `LocalDiskStorage`.

The recorder writes each recording's raw tracks into a local working directory; the programme
job builds the HLS files next to them; `publish` makes those servable; the library reads
playback files by name and deletes a recording's files. An object store implements the same
five methods (upload in `publish`, GET in `read`) without the recorder or the library changing.
Names are checked here (`safe_name`) so no caller can reach outside a recording.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Protocol

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_RECORDING_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PUBLISHED = "hls"
"""Sub-directory of a recording holding what playback serves (playlists, segments, poster)."""
TRACKS = "tracks"
"""Sub-directory of a recording holding the raw track files and their manifest."""


def safe_name(name: str) -> bool:
    """A playback file name: one path segment, no leading dot, nothing but [A-Za-z0-9_.-]."""
    return bool(_NAME.match(name)) and ".." not in name


def safe_recording_id(recording_id: str) -> bool:
    return bool(_RECORDING_ID.match(recording_id))


class RecordingStorage(Protocol):
    """See the module docstring."""

    def work_dir(self, recording_id: str) -> Path:
        """A local directory for the raw tracks (`TRACKS`) and the built programme."""

    async def publish(self, recording_id: str, built: Path) -> None:
        """Make the playback files in `built` servable under the recording."""

    async def read(self, recording_id: str, name: str) -> bytes | None:
        """A published playback file's bytes; None if there is no such file."""

    async def delete(self, recording_id: str) -> None:
        """Remove every file of the recording (raw tracks and playback)."""

    async def size(self, recording_id: str) -> int:
        """Bytes the recording occupies."""


class LocalDiskStorage:
    """Recordings under `root/<recording id>/` on the node's disk (`--data-dir`/recordings)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, recording_id: str) -> Path:
        if not safe_recording_id(recording_id):
            raise ValueError("not a recording id")
        return self.root / recording_id

    def work_dir(self, recording_id: str) -> Path:
        return self._dir(recording_id)

    async def publish(self, recording_id: str, built: Path) -> None:
        target = self._dir(recording_id) / PUBLISHED

        def move() -> None:
            if built.resolve() == target.resolve():
                return
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(built), str(target))

        await asyncio.to_thread(move)

    async def read(self, recording_id: str, name: str) -> bytes | None:
        if not safe_name(name) or not safe_recording_id(recording_id):
            return None
        path = self._dir(recording_id) / PUBLISHED / name

        def load() -> bytes | None:
            try:
                return path.read_bytes() if path.is_file() else None
            except OSError:
                return None

        return await asyncio.to_thread(load)

    async def delete(self, recording_id: str) -> None:
        folder = self._dir(recording_id)
        await asyncio.to_thread(shutil.rmtree, folder, True)

    async def size(self, recording_id: str) -> int:
        folder = self._dir(recording_id)

        def total() -> int:
            return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

        return await asyncio.to_thread(total)
