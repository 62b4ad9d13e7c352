"""How an impaired link behaves: per-direction rate caps, random loss, cuts, and named
profiles whose state changes on a schedule (pure; `bench.lab.netlab` makes a real link behave so).

The profiles (docs/measuring.md): good (10 Mbit/s), village-4g (2 Mbit/s down, 1 up, 1% loss),
weak (500/256 kbit/s, 3%), very-weak (200/128 kbit/s, 5%), flap (good -> 150 kbit/s for 20 s
-> good) and drop (cut for 5 s, then back). `custom_profile` builds any other steady link.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Direction(enum.StrEnum):
    """A direction of the link."""

    DOWN = "down"
    """Server to client (what a classroom receives)."""
    UP = "up"
    """Client to server (what a classroom sends)."""


@dataclass(frozen=True, slots=True)
class LinkState:
    """How the link behaves at one moment."""

    down_kbps: float | None = None
    """Rate cap server -> client in kbit/s (1000 bit/s), or None for no cap."""
    up_kbps: float | None = None
    """Rate cap client -> server in kbit/s, or None."""
    down_loss_pct: float = 0.0
    """Random loss server -> client, percent (0.1% steps)."""
    up_loss_pct: float = 0.0
    """Random loss client -> server, percent."""
    cut: bool = False
    """Nothing passes either way (the loss and rate settings are kept for afterwards)."""
    queue_ms: float = 100.0
    """How long a packet may wait in a rate cap's queue before it is dropped."""

    def rate(self, direction: Direction) -> float | None:
        """The rate cap of `direction`."""
        return self.down_kbps if direction is Direction.DOWN else self.up_kbps

    def loss(self, direction: Direction) -> float:
        """The random loss of `direction`, percent."""
        return self.down_loss_pct if direction is Direction.DOWN else self.up_loss_pct


UNIMPAIRED = LinkState()


@dataclass(frozen=True, slots=True)
class Profile:
    """A named link: a state from the start, and changes at times after the start."""

    name: str
    """`--profile` name."""
    state: LinkState
    """The state from the start."""
    schedule: tuple[tuple[float, LinkState], ...] = ()
    """(seconds after the start, state from then on), in time order."""

    def state_at(self, elapsed_s: float) -> LinkState:
        """The state `elapsed_s` seconds after the start."""
        current = self.state
        for at_s, state in self.schedule:
            if elapsed_s < at_s:
                break
            current = state
        return current

    @property
    def settled_after_s(self) -> float:
        """When the last scheduled change happens (0 for a steady link)."""
        return self.schedule[-1][0] if self.schedule else 0.0


def custom_profile(
    down_kbps: float | None,
    up_kbps: float | None,
    loss_pct: float = 0.0,
    *,
    name: str = "custom",
    queue_ms: float = 100.0,
) -> Profile:
    """A steady link with these caps and the same random loss both ways."""
    return Profile(name, LinkState(down_kbps, up_kbps, loss_pct, loss_pct, queue_ms=queue_ms))


GOOD = LinkState(10_000, 10_000)


def flap_profile(
    after_s: float = 10.0, low_kbps: float = 150.0, low_for_s: float = 20.0
) -> Profile:
    """Good, then `low_kbps` both ways for `low_for_s` seconds from `after_s`, then good."""
    low = LinkState(low_kbps, low_kbps)
    return Profile("flap", GOOD, ((after_s, low), (after_s + low_for_s, GOOD)))


def drop_profile(after_s: float = 10.0, cut_for_s: float = 5.0) -> Profile:
    """Good, then cut both ways for `cut_for_s` seconds from `after_s`, then good."""
    return Profile("drop", GOOD, ((after_s, replace(GOOD, cut=True)), (after_s + cut_for_s, GOOD)))


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("good", GOOD),
        custom_profile(2_000, 1_000, 1.0, name="village-4g"),
        custom_profile(500, 256, 3.0, name="weak"),
        custom_profile(200, 128, 5.0, name="very-weak"),
        flap_profile(),
        drop_profile(),
    )
}
"""The profiles by name."""
