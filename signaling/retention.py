"""Retention of consult records: erasing a consult's note and snapshots once it has been closed
longer than `--consult-retention-days`, each erasure audited.

`sweep_retention` is one pass with the clock passed in (tests run it directly, on both stores):
the consults the store's index names, then snapshot folders whose consult is gone from the store
(consults closed before the index existed) once their files are older than the period;
`RetentionSweeper` runs it on the node every `RETENTION_SWEEP_S` as a cancellable task. Several
nodes may sweep at once: erasing twice is harmless (the second finds nothing).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from broker.audit import AuditAction, AuditLog, DetailValue
from broker.clock import Clock
from broker.consult_records import ConsultRecords, retention_cutoff
from broker.errors import StoreUnavailable
from signaling.cancellation import cancel_and_wait

log = logging.getLogger("tongxin.retention")

RETENTION_SWEEP_S = 3600.0
"""How often a node looks for consults past retention."""
SWEEP_BATCH = 200
"""Consults erased per pass at most (the next pass goes on)."""


def snapshot_folder(data_dir: Path, consult_id: str) -> Path:
    """Where a consult's snapshot images are stored."""
    return Path(data_dir) / "snapshots" / consult_id


def remove_snapshot_files(data_dir: Path, consult_id: str) -> int:
    """Delete a consult's snapshot folder (blocking: run in a thread); files removed."""
    root = Path(data_dir) / "snapshots"
    folder = snapshot_folder(data_dir, consult_id)
    if folder.parent != root or folder.name != consult_id or not folder.is_dir():
        return 0
    count = sum(1 for p in folder.iterdir() if p.is_file())
    shutil.rmtree(folder)
    return count


def stale_folders(data_dir: Path, cutoff: float, limit: int) -> list[str]:
    """Consult ids of snapshot folders not modified since `cutoff` (epoch seconds; blocking)."""
    root = Path(data_dir) / "snapshots"
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            found.append(folder.name)
            if len(found) >= limit:
                break
    return found


async def sweep_orphans(records: ConsultRecords, audit: AuditLog, data_dir: Path,
                        now: float, *, limit: int = SWEEP_BATCH) -> list[str]:
    """Erase snapshot folders older than the retention period whose consult the store no longer
    has (its ticket expired before the retention index existed), with their snapshot records;
    audited `retention_erase` with `orphan: true`. Returns the consult ids erased."""
    cutoff = retention_cutoff(now, records.retention_s)
    erased: list[str] = []
    for consult_id in await asyncio.to_thread(stale_folders, data_dir, cutoff, limit):
        if await records.find(consult_id) is not None:
            continue  # still indexed: `sweep_retention` erases it in its time
        if await erase_consult(records, audit, data_dir, consult_id, {"orphan": True}):
            erased.append(consult_id)
    return erased


async def erase_consult(records: ConsultRecords, audit: AuditLog, data_dir: Path,
                        consult_id: str, detail: dict[str, DetailValue]) -> bool:
    """Snapshot files, then the ticket (with the note) and snapshot records, then an audit
    entry `retention_erase` (`detail` plus counts). False, erasing nothing, when the files
    cannot be removed (the next pass tries again)."""
    try:
        files = await asyncio.to_thread(remove_snapshot_files, data_dir, consult_id)
    except OSError as exc:
        log.warning("cannot remove snapshot files", extra={"consult": consult_id,
                                                           "error": str(exc)})
        return False
    snapshots = await records.erase(consult_id)
    await audit.append("system", AuditAction.RETENTION_ERASE, session=consult_id,
                       detail={**detail, "snapshots": snapshots, "files": files})
    return True


async def sweep_retention(records: ConsultRecords, audit: AuditLog, data_dir: Path,
                          now: float, *, limit: int = SWEEP_BATCH) -> list[str]:
    """Erase every consult closed more than the retention period before `now` (at most
    `limit`): snapshot files, then its ticket (with the note) and snapshot records, then an
    audit entry `retention_erase`. Returns the consult ids erased. A consult whose files cannot
    be removed is left for the next pass."""
    erased: list[str] = []
    for consult_id, closed_at in await records.past_retention(now, limit):
        if await erase_consult(records, audit, data_dir, consult_id, {"closed_at": closed_at}):
            erased.append(consult_id)
    return erased + await sweep_orphans(records, audit, data_dir, now, limit=limit)


class RetentionSweeper:
    """Runs `sweep_retention` every `interval_s` until stopped."""

    def __init__(self, records: ConsultRecords, audit: AuditLog, data_dir: Path, clock: Clock,
                 interval_s: float = RETENTION_SWEEP_S) -> None:
        self.records = records
        self.audit = audit
        self.data_dir = data_dir
        self.clock = clock
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                erased = await sweep_retention(self.records, self.audit, self.data_dir,
                                               self.clock())
                if erased:
                    log.info("consults erased by retention", extra={"count": len(erased)})
            except StoreUnavailable:
                pass
            except Exception:
                log.exception("retention sweep failed")
            await asyncio.sleep(self.interval_s)
