"""The recordings library: visibility, filters, consent, life cycle, retention, tokens, storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.audit import AuditLog
from broker.clock import ManualClock
from broker.errors import Conflict, Forbidden, Unauthorized
from broker.models import Role
from broker.recording_storage import LocalDiskStorage, safe_name
from broker.recording_tokens import PLAYBACK_AUDIENCE, WATCH_AUDIENCE, RecordingTokens
from broker.recordings import (
    Recording,
    RecordingService,
    RecordingStatus,
    Rendition,
    Viewer,
    expired,
    matches,
    recording_view,
    visible_to,
)
from broker.store import Store
from broker.tokens import Keyring

T0 = 1_790_000_000.0  # 2026-09-21


def rec(kind: str = "class", host: str = "t1", sites: tuple[str, ...] = ("c1", "school1"),
        **kw: object) -> Recording:
    return Recording(id="r1", session="s1", kind=kind, title="分数的初步认识", subject="数学",
                     teacher="王老师", host_id=host, site_ids=sites, started_at=T0, **kw)


@pytest.mark.parametrize(("recording", "viewer", "sees"), [
    (rec(), Viewer("op", Role.OPERATOR), True),
    (rec(), Viewer("t1", Role.TEACHER), True),
    (rec(), Viewer("t2", Role.TEACHER), False),
    (rec(), Viewer("c1", Role.ASSISTANT), True),
    (rec(), Viewer("c9", Role.ASSISTANT, school="school1"), True),
    (rec(), Viewer("c9", Role.ASSISTANT, school="school2"), False),
    (rec(), Viewer("t1", Role.DOCTOR), False),
    (rec(), Viewer("x", Role.OBSERVER), False),
    (rec("consult", "d1", ("clinic1",)), Viewer("d1", Role.DOCTOR), True),
    (rec("consult", "d1", ("clinic1",)), Viewer("d2", Role.DOCTOR), False),
    (rec("consult", "d1", ("clinic1",)), Viewer("clinic1", Role.CLINIC), True),
    (rec("consult", "d1", ("clinic1",)), Viewer("clinic2", Role.CLINIC), False),
    (rec("consult", "d1", ("clinic1",)), Viewer("clinic1", Role.ASSISTANT), False),
    (rec("consult", "d1", ("clinic1",)), Viewer("d1", Role.TEACHER), False),
])
def test_who_sees_a_recording(recording: Recording, viewer: Viewer, sees: bool) -> None:
    assert visible_to(recording, viewer) is sees


@pytest.mark.parametrize(("filters", "hit"), [
    ({}, True),
    ({"kind": "class"}, True),
    ({"kind": "consult"}, False),
    ({"teacher": "t1"}, True),
    ({"teacher": "王老师"}, True),
    ({"teacher": "t2"}, False),
    ({"subject": "数学"}, True),
    ({"subject": "语文"}, False),
    ({"q": "分数"}, True),
    ({"q": "王"}, True),
    ({"q": "小数"}, False),
    ({"day_from": "2026-09-21", "day_to": "2026-09-21"}, True),
    ({"day_from": "2026-09-22"}, False),
    ({"day_to": "2026-09-20"}, False),
])
def test_library_filters(filters: dict[str, str], hit: bool) -> None:
    assert matches(rec(), **filters) is hit  # type: ignore[arg-type]


@pytest.mark.parametrize(("ended_days_ago", "retention", "gone"), [
    (1, 90, False), (89, 90, False), (91, 90, True), (2, 1, True),
])
def test_retention(ended_days_ago: float, retention: float, gone: bool) -> None:
    now = T0 + 365 * 86400
    recording = rec(ended_at=now - ended_days_ago * 86400)
    assert expired(recording, now, retention) is gone


def test_the_view_has_urls_only_when_ready() -> None:
    processing = rec(ended_at=T0 + 120, status=RecordingStatus.PROCESSING, progress=0.5)
    view = recording_view(processing, playback_token="tok")
    assert view["playback_url"] is None and view["duration_s"] == 120.0
    assert view["started_at"] == "2026-09-21T14:13:20Z"
    ready = rec(ended_at=T0 + 120, status=RecordingStatus.READY,
                renditions=(Rendition("low", 200_000, 320, 180),))
    view = recording_view(ready, playback_token="tok")
    assert view["playback_url"] == "/media/recordings/tok/master.m3u8"
    assert view["poster_url"] == "/media/recordings/tok/poster.jpg"
    assert view["renditions"] == [{"name": "low", "bandwidth": 200_000, "width": 320,
                                   "height": 180}]


def test_share_and_playback_tokens_expire_and_keep_to_their_audience() -> None:
    clock = ManualClock(T0)
    keyring = Keyring.generate()
    tokens = RecordingTokens(lambda: keyring, clock)
    share, expires_at = tokens.issue("r1", WATCH_AUDIENCE, 60)
    assert expires_at == T0 + 60
    assert tokens.verify(share, WATCH_AUDIENCE) == "r1"
    with pytest.raises(Unauthorized):
        tokens.verify(share, PLAYBACK_AUDIENCE)
    with pytest.raises(Unauthorized):
        RecordingTokens(lambda: Keyring.generate(), clock).verify(share, WATCH_AUDIENCE)
    with pytest.raises(Unauthorized):
        tokens.verify(share[:-3] + "abc", WATCH_AUDIENCE)
    clock.advance(61)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(share, WATCH_AUDIENCE)


@pytest.mark.parametrize(("name", "safe"), [
    ("master.m3u8", True), ("low_00001.ts", True), ("poster.jpg", True),
    ("../x", False), ("..", False), (".hidden", False), ("a/b.ts", False), ("", False),
    ("a..b.ts", False), ("x" * 200, False),
])
def test_playback_file_names(name: str, safe: bool) -> None:
    assert safe_name(name) is safe


async def test_consent_life_cycle_and_retention_on_the_store(store: Store, tmp_path: Path
                                                             ) -> None:
    clock = ManualClock(T0)
    audit = AuditLog(store, clock)
    storage = LocalDiskStorage(tmp_path)
    service = RecordingService(store, audit, clock, storage)

    with pytest.raises(Conflict) as no_consent:
        await service.require_consent("k1")
    assert no_consent.value.code == "consent_required"
    await service.request_consent("k1", "d1")
    assert await service.pending_consent("k1") == "d1"
    assert await service.answer_consent("k1", "clinic1", False) == "d1"
    with pytest.raises(Conflict) as refused:
        await service.require_consent("k1")
    assert refused.value.code == "consent_refused"
    assert await service.answer_consent("k2", "clinic1", True) is None  # granted in advance
    await service.require_consent("k2")
    entries = (await audit.read(session="k1")).entries
    assert [(e.action, e.actor, e.at, e.detail["granted"]) for e in entries] == [
        ("consent", "clinic1", T0, False)]

    recording = await service.start(session="k2", kind="consult", title="内科", subject="内科",
                                    teacher="李医生", host_id="d1", site_ids=("clinic1",),
                                    actor="d1")
    assert (await service.active("k2")) == recording
    clock.advance(120)
    stopped = await service.stop("k2", "d1")
    assert stopped is not None and stopped.status is RecordingStatus.PROCESSING
    assert stopped.duration_s == 120.0 and await service.active("k2") is None
    await service.set_progress(recording.id, 0.4)
    assert (await service.get(recording.id)).progress == 0.4
    done = await service.finish(recording.id, [Rendition("normal", 700_000, 640, 360)], 119.5)
    assert done is not None and done.status is RecordingStatus.READY
    assert done.duration_s == 119.5
    assert [r.id for r in await service.list(Viewer("clinic1", Role.CLINIC))] == [recording.id]
    assert await service.list(Viewer("clinic2", Role.CLINIC)) == []

    folder = storage.work_dir(recording.id)
    (folder / "hls").mkdir(parents=True)
    (folder / "hls" / "master.m3u8").write_text("#EXTM3U\n")
    assert await storage.read(recording.id, "master.m3u8") == b"#EXTM3U\n"
    assert await storage.read(recording.id, "../hls/master.m3u8") is None
    with pytest.raises(Forbidden):
        await service.delete(recording.id, Role.TEACHER, "t1")
    assert await service.sweep(retention_days=1) == []
    clock.advance(2 * 86400)
    assert await service.sweep(retention_days=1) == [recording.id]
    assert await service.find(recording.id) is None and not folder.exists()
