"""The WebSocket protocol's messages, typed and validated at the edge (see PROTOCOL.md).

Every frame is a JSON object whose `type` field names the message. Client frames decode into
one of the `ClientMessage` structs or are rejected with an error frame; server frames are
encoded from the `ServerMessage` structs. Field limits here are the first defence against
hostile input: sizes are bounded before anything else looks at a frame.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

MAX_FRAME_BYTES = 256 * 1024
"""Largest client frame accepted (an SDP with many candidates fits comfortably)."""
MAX_SDP_CHARS = 64 * 1024
MAX_MEDIA_SECTIONS = 16
"""Largest number of m= sections accepted in a client's SDP."""

Id = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
Sdp = Annotated[str, Meta(min_length=10, max_length=MAX_SDP_CHARS)]
Source = Literal["mic", "camera", "screen"]
Note = Annotated[str, Meta(max_length=2000)]
Outcome = Literal["resolved", "referred", "follow_up", "no_show", "cancelled", "other"]


class ClientFrame(Struct, tag_field="type", forbid_unknown_fields=True, frozen=True):
    """Base of frames a client sends."""


class Join(ClientFrame, tag="join", frozen=True):
    """First frame on a connection: who I am."""

    credential: Annotated[str, Meta(min_length=10, max_length=4096)]
    """Session credential from POST /api/v1/session (a join-link token is accepted too)."""
    resume: Annotated[str, Meta(max_length=4096)] | None = None
    """Resume token from a previous `welcome`, to keep the seat after a reconnect (30 s)."""


class Enter(ClientFrame, tag="enter", frozen=True):
    """Enter a media session the caller may join (a consult it requested or claimed)."""

    session: Id


class Leave(ClientFrame, tag="leave", frozen=True):
    """Leave the media session (the connection stays for lobby or console updates)."""


class Publish(ClientFrame, tag="publish", frozen=True):
    """Offer of the publishing ("up") peer connection; the server answers with `answer`."""

    sdp: Sdp
    sources: Annotated[dict[Annotated[str, Meta(max_length=8)], Source], Meta(max_length=8)]
    """The offer's mid of each sent track -> what it is."""


class Answer(ClientFrame, tag="answer", frozen=True):
    """Answer to the server's `offer` for the receiving ("down") peer connection."""

    sdp: Sdp


class RequestOffer(ClientFrame, tag="request_offer", frozen=True):
    """Ask the server to (re)send the down connection's offer (after a new peer connection)."""


class Mute(ClientFrame, tag="mute", frozen=True):
    """Mute or unmute audio: myself, one participant or everyone ("*"; teacher/doctor only)."""

    muted: bool
    participant: Annotated[str, Meta(max_length=128)] | None = None


class Hand(ClientFrame, tag="hand", frozen=True):
    """Raise or lower the classroom's hand."""

    raised: bool


class Spotlight(ClientFrame, tag="spotlight", frozen=True):
    """Call on a classroom (everyone sees and hears it); null returns to the teacher."""

    participant: Id | None


class Claim(ClientFrame, tag="claim", frozen=True):
    """A doctor takes a waiting consult request."""

    consult: Id


class Admit(ClientFrame, tag="admit", frozen=True):
    """A doctor admits the clinic of a claimed consult from the waiting room."""

    consult: Id


class HandOver(ClientFrame, tag="hand_over", frozen=True):
    """A doctor hands the current consult over to another expert."""

    consult: Id
    expert: Id
    note: Note = ""


class End(ClientFrame, tag="end", frozen=True):
    """End the class (teacher) or the consult (doctor), with an outcome for a consult."""

    outcome: Outcome | None = None
    note: Note = ""


class Record(ClientFrame, tag="record", frozen=True):
    """Start or stop recording (only where the session allows it)."""

    on: bool


class Consent(ClientFrame, tag="consent", frozen=True):
    """The clinic's answer to a recording consent request."""

    granted: bool


class LinkReport(ClientFrame, tag="link", frozen=True):
    """The client's own view of its link (from getStats), shown to the teacher and operator."""

    rtt_ms: Annotated[float, Meta(ge=0, le=60_000)] | None = None
    loss_pct: Annotated[float, Meta(ge=0, le=100)] | None = None
    down_kbps: Annotated[float, Meta(ge=0, le=1_000_000)] | None = None
    up_kbps: Annotated[float, Meta(ge=0, le=1_000_000)] | None = None
    fps: Annotated[float, Meta(ge=0, le=240)] | None = None


DataBudget = Annotated[float, Meta(ge=5, le=2000)]
"""MB per hour (the relay's `media.adapt.data_budget` limits)."""


class DataSaverFrame(ClientFrame, tag="data_saver", frozen=True):
    """Keep my downlink within a data budget (MB per hour); null clears my own budget (the
    site's default, if the operator set one, applies again)."""

    mb_per_hour: DataBudget | None


class Ping(ClientFrame, tag="ping", frozen=True):
    """Heartbeat; the server answers `pong` with the same `t`."""

    t: float | None = None


ClientMessage = (
    Join | Enter | Leave | Publish | Answer | RequestOffer | Mute | Hand | Spotlight | Claim
    | Admit | HandOver | End | Record | Consent | LinkReport | DataSaverFrame | Ping
)


class ServerFrame(Struct, tag_field="type", omit_defaults=False):
    """Base of frames the server sends."""


class ParticipantView(Struct):
    id: str
    role: str
    name: str
    present: bool = True
    muted: bool = False
    hand: bool = False
    link: dict[str, Any] | None = None
    """Last link report: rung, estimate_kbps, loss_pct, rtt_ms."""


class Welcome(ServerFrame, tag="welcome"):
    """Accepted: who I am, my resume token, ICE servers, heartbeat interval."""

    participant: ParticipantView
    permissions: list[str]
    session: str | None
    resume: str
    ice_servers: list[dict[str, Any]]
    heartbeat_s: float


class SessionState(ServerFrame, tag="session"):
    """Full state of the media session; sent on entry and after every change."""

    id: str
    kind: Literal["class", "consult"]
    title: str
    status: str
    participants: list[ParticipantView]
    spotlight: str | None = None
    hands: list[str] = []
    recording: bool = False
    detail: dict[str, Any] = {}


class Offer(ServerFrame, tag="offer"):
    """Offer for the down connection; `tracks` says what each mid carries."""

    sdp: str
    tracks: dict[str, dict[str, str]]


class ServerAnswer(ServerFrame, tag="answer"):
    sdp: str


class Queue(ServerFrame, tag="queue"):
    """Doctor console: requests matched to me; clinic: my requests' waiting-room state."""

    items: list[dict[str, Any]]


class Notice(ServerFrame, tag="notice"):
    """Something the page should tell its user (weak network, recording on, …)."""

    level: Literal["info", "warning", "error"]
    code: str
    message: str
    detail: dict[str, Any] = {}


class RecordingState(ServerFrame, tag="recording"):
    """Recording of this session turned on or off (everyone in the session gets it)."""

    on: bool
    since: str | None = None
    """When it started (ISO 8601, UTC) while on."""
    recording: str | None = None
    """The recording's id while on."""


class ConsentRequest(ServerFrame, tag="consent_request"):
    """To the clinic: the doctor asks to record this consult; answer with `consent`."""

    consult: str
    by: str
    """The doctor's name."""


class Link(ServerFrame, tag="link"):
    """An adaptation decision for a subscriber (me, or a classroom in the teacher's grid)."""

    participant: str
    rung: str
    estimate_kbps: float | None = None
    loss_pct: float | None = None
    rtt_ms: float | None = None
    reason: str = ""
    paused: list[str] = msgspec.field(default_factory=list)
    """Video tracks (`participant:source`) the subscriber does not receive now."""


class Layers(ServerFrame, tag="layers"):
    """To a simulcast publisher (dynacast): send only these layers (RIDs) of this source,
    pause the others; and hold each layer named in `max_kbps` to that bitrate (kbit/s; the
    others keep the page's own ceilings, and the page never goes above its own)."""

    source: str
    active: list[str] = msgspec.field(default_factory=list)
    max_kbps: dict[str, float] = msgspec.field(default_factory=dict)


class DataUsage(ServerFrame, tag="data"):
    """What the relay sent me since I joined the session, and my data budget (every few
    seconds, and when the budget changes)."""

    used_mb: float
    elapsed_s: float
    budget_mb_h: float | None = None
    """None: no budget (the meter still counts)."""
    allowed_mb: float | None = None
    """What the budget allowed by now (budget × hours since I joined)."""
    ceiling_kbps: float | None = None
    """The most my downlink may use now under the budget."""
    verdict: Literal["under", "limiting", "below_audio"] | None = None
    """`limiting`: the budget, not my link, decides my video; `below_audio`: the budget does
    not even cover audio (audio only, over budget)."""


class Reconnect(ServerFrame, tag="reconnect"):
    """The media side lost this session (worker restart): build new peer connections."""

    reason: str


class Redirect(ServerFrame, tag="redirect"):
    """This session's media is held by another node: reconnect the WebSocket to `url` with the
    same credential (and send `enter {session}` again when you had entered a consult)."""

    url: str
    session: str
    reason: str = ""


class Ended(ServerFrame, tag="ended"):
    session: str
    outcome: str | None = None


class Pong(ServerFrame, tag="pong"):
    t: float | None = None


class ErrorFrame(ServerFrame, tag="error"):
    code: str
    message: str
    ref: str | None = None
    """The `type` of the client frame that caused it, when known."""


ServerMessage = (
    Welcome | SessionState | Offer | ServerAnswer | Queue | Notice | Link | Reconnect | Redirect
    | Ended | Pong | ErrorFrame | RecordingState | ConsentRequest | DataUsage | Layers
)

client_decoder = msgspec.json.Decoder(ClientMessage)
encoder = msgspec.json.Encoder()


def frame_type(raw: bytes | str) -> str | None:
    """Best-effort `type` of a frame that failed to decode, for the error's `ref`."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):  # a hostile frame may nest arrays deeply
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    return kind[:32] if isinstance(kind, str) else None


def count_media_sections(sdp: str) -> int:
    return sum(1 for line in sdp.splitlines() if line.startswith("m="))
