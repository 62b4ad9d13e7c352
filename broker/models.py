"""The directory's vocabulary: roles, permissions, urgency, site kinds, experts, sites, operators.

These Structs are what the REST API exposes and what the store holds (msgspec JSON). Field
constraints live in the types (`Annotated[..., Meta]`), so decoding a request body validates it;
`validated()` applies the same checks to a Struct built in code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta, Struct

from broker.errors import InvalidInput

EntityId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
"""Ids of experts, sites, operators, classes and consults: they go into store keys and channels,
so no ':' or spaces."""

Skill = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[^:\s][^:]*$")]
"""A medical specialty (e.g. 内科) or a school subject (e.g. 数学); free text without ':'."""

Language = Annotated[str, Meta(min_length=2, max_length=8, pattern=r"^[a-z]{2,3}(-[A-Za-z]+)?$")]
"""An ISO 639 language code: zh, bo (Tibetan), ug (Uyghur), en."""

DisplayName = Annotated[str, Meta(min_length=1, max_length=100)]
"""A name shown to people (Chinese or not)."""

DataBudget = Annotated[int, Meta(ge=5, le=2000)]
"""A data budget in MB per hour (the relay's `media.adapt.data_budget` limits)."""
RegionPath = Annotated[
    tuple[Annotated[str, Meta(min_length=1, max_length=40, pattern=r"^[^/]+$")], ...],
    Meta(max_length=5),
]
"""province / city / county / township / village, as far down as known."""


class Role(StrEnum):
    """What a token holder is in a session."""

    TEACHER = "teacher"
    ASSISTANT = "assistant"
    DOCTOR = "doctor"
    CLINIC = "clinic"
    OBSERVER = "observer"
    OPERATOR = "operator"


class Permission(StrEnum):
    """What a token holder may do in a session."""

    PUBLISH_AUDIO = "publish_audio"
    PUBLISH_VIDEO = "publish_video"
    PUBLISH_SCREEN = "publish_screen"
    SUBSCRIBE = "subscribe"
    RECORD = "record"
    ADMIT = "admit"
    REQUEST_CONSULT = "request_consult"


DEFAULT_PERMISSIONS: dict[Role, tuple[Permission, ...]] = {
    Role.TEACHER: (
        Permission.PUBLISH_AUDIO,
        Permission.PUBLISH_VIDEO,
        Permission.PUBLISH_SCREEN,
        Permission.SUBSCRIBE,
        Permission.RECORD,
        Permission.ADMIT,
    ),
    Role.ASSISTANT: (Permission.PUBLISH_AUDIO, Permission.PUBLISH_VIDEO, Permission.SUBSCRIBE),
    Role.DOCTOR: (
        Permission.PUBLISH_AUDIO,
        Permission.PUBLISH_VIDEO,
        Permission.PUBLISH_SCREEN,
        Permission.SUBSCRIBE,
        Permission.RECORD,
        Permission.ADMIT,
    ),
    Role.CLINIC: (
        Permission.PUBLISH_AUDIO,
        Permission.PUBLISH_VIDEO,
        Permission.SUBSCRIBE,
        Permission.REQUEST_CONSULT,
    ),
    Role.OBSERVER: (Permission.SUBSCRIBE,),
    Role.OPERATOR: (Permission.SUBSCRIBE, Permission.RECORD),
}
"""Permissions a token of each role gets unless the issuer says otherwise."""


class Urgency(StrEnum):
    """How soon a consult request needs a doctor."""

    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class SiteKind(StrEnum):
    """What a site is; the medical kinds form the escalation network."""

    SCHOOL = "school"
    CLASSROOM = "classroom"
    VILLAGE_CLINIC = "village_clinic"
    TOWNSHIP_HEALTH_CENTER = "township_health_center"
    COUNTY_HOSPITAL = "county_hospital"
    CITY_HOSPITAL = "city_hospital"
    PROVINCIAL_HOSPITAL = "provincial_hospital"


MEDICAL_LEVEL: dict[SiteKind, int] = {
    SiteKind.VILLAGE_CLINIC: 0,
    SiteKind.TOWNSHIP_HEALTH_CENTER: 1,
    SiteKind.COUNTY_HOSPITAL: 2,
    SiteKind.CITY_HOSPITAL: 3,
    SiteKind.PROVINCIAL_HOSPITAL: 4,
}
"""Level of each medical site kind: a site's parent in the network has a higher level."""


class ExpertKind(StrEnum):
    """An expert teaches classes or holds consults."""

    TEACHER = "teacher"
    DOCTOR = "doctor"


class Expert(Struct, frozen=True, kw_only=True):
    """A teacher or a doctor in the directory."""

    id: EntityId
    """Stable id, used as the token subject."""
    name: DisplayName
    """Name shown to others (e.g. 王医生)."""
    kind: ExpertKind
    """teacher or doctor."""
    specialties: Annotated[tuple[Skill, ...], Meta(max_length=16)] = ()
    """Medical specialties of a doctor (内科, 儿科, …) or school subjects of a teacher (数学)."""
    languages: Annotated[tuple[Language, ...], Meta(min_length=1, max_length=8)] = ("zh",)
    """Languages the expert can hold a session in."""
    capacity: Annotated[int, Meta(ge=1, le=50)] = 1
    """Consults the expert may hold at once."""
    on_duty: bool = False
    """Whether the expert takes consult requests now."""
    site_id: EntityId | None = None
    """The hospital or school the expert works at."""


class Site(Struct, frozen=True, kw_only=True):
    """A school, classroom, clinic or hospital."""

    id: EntityId
    """Stable id."""
    name: DisplayName
    """Name shown to people (e.g. 清源镇卫生院)."""
    kind: SiteKind
    """What the site is."""
    region: RegionPath = ()
    """Where it is: province, city, county, township, village."""
    parent_site_id: EntityId | None = None
    """Next site up: the medical network's escalation parent, or a classroom's school."""
    data_budget_mb_h: DataBudget | None = None
    """Data saver by default for whoever joins as this site (a village classroom or clinic
    on prepaid mobile data): its downlink is kept within this many MB per hour unless the
    participant sets its own budget (`data_saver` frame)."""


class Operator(Struct, frozen=True, kw_only=True):
    """A county or city operator who manages the directory and watches sessions."""

    id: EntityId
    """Stable id, used as the token subject."""
    name: DisplayName
    """Name shown in the audit log."""
    region: RegionPath = ()
    """The region the operator looks after."""


class Actor(Struct, frozen=True):
    """Who performs an action: a token's subject and role (services check them)."""

    id: str
    """The token subject: an expert, site or operator id."""
    role: Role
    """The token role."""


S = TypeVar("S", bound=Struct)


def validated(obj: S) -> S:
    """`obj` after the checks decoding would apply (constraints in the field types).

    Raises `InvalidInput` naming the offending field.
    """
    try:
        return msgspec.convert(msgspec.to_builtins(obj), type(obj))
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid {type(obj).__name__.lower()}: {exc}") from None


_decoders: dict[type, msgspec.json.Decoder[Any]] = {}
_encoder = msgspec.json.Encoder()


def decode_as(data: bytes, kind: type[S]) -> S:
    """Decode store bytes (JSON written by this package) into `kind` (decoders are cached)."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    result: S = decoder.decode(data)
    return result


def encode(obj: Any) -> bytes:
    """JSON bytes of a Struct (what the store holds)."""
    return _encoder.encode(obj)
