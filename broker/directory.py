"""`Directory`: experts, sites and operators in the store, their listings and filters, who is on
duty for which specialty where, and the medical network's escalation chain.

Store layout: maps `directory:experts`, `directory:sites`, `directory:operators` (id -> JSON),
plus an on-duty index: one map per (specialty, site), `directory:on_duty:<specialty>:<site>`,
holding each on-duty doctor's JSON, so matching a request reads one small map instead of the
whole directory. The index is rewritten from the expert record on every change; two nodes
changing the same expert at the same instant could leave a stale index entry until its next
change, which is harmless because claims re-check the expert record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from broker.audit import AuditAction, AuditLog
from broker.errors import Conflict, InvalidInput, NotFound
from broker.models import (
    MEDICAL_LEVEL,
    Expert,
    ExpertKind,
    Operator,
    Site,
    SiteKind,
    decode_as,
    encode,
    validated,
)
from broker.store import Store

EXPERTS = "directory:experts"
SITES = "directory:sites"
OPERATORS = "directory:operators"
MAX_CHAIN = 8
"""Longest parent chain followed (the network has 5 levels; more means a loop)."""


def on_duty_index(specialty: str, site_id: str) -> str:
    """Name of the map of on-duty doctors of `specialty` at `site_id`."""
    return f"directory:on_duty:{specialty}:{site_id}"


def _index_keys(expert: Expert | None) -> set[tuple[str, str]]:
    """(index map, field) pairs an expert record should appear under."""
    if (
        expert is None
        or not expert.on_duty
        or expert.kind is not ExpertKind.DOCTOR
        or expert.site_id is None
    ):
        return set()
    return {(on_duty_index(s, expert.site_id), expert.id) for s in expert.specialties}


def region_matches(region: Sequence[str], prefix: Sequence[str]) -> bool:
    """True when `region` lies inside `prefix` (a province, a county, …)."""
    return tuple(region[: len(prefix)]) == tuple(prefix)


def parse_region(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """A region prefix from `甘肃省/定西市` or a sequence; empty means everywhere."""
    if text is None:
        return ()
    parts = text.split("/") if isinstance(text, str) else list(text)
    return tuple(p.strip() for p in parts if p.strip())


class Directory:
    """CRUD and queries over experts, sites and operators; see the module docstring."""

    def __init__(self, store: Store, audit: AuditLog | None = None) -> None:
        self._store = store
        self._audit = audit

    async def _log(self, actor: str, what: str, target: str) -> None:
        if self._audit is not None:
            await self._audit.append(
                actor, AuditAction.DIRECTORY_CHANGE, detail={"change": what, "id": target}
            )

    # --- sites --------------------------------------------------------------------------
    async def put_site(self, site: Site, *, actor: str = "system") -> Site:
        """Create or replace a site. A medical site's parent must be a medical site one level
        up or more; a classroom's parent, if any, a school; no loops."""
        site = validated(site)
        if site.parent_site_id is not None:
            if site.parent_site_id == site.id:
                raise InvalidInput("a site cannot be its own parent")
            parent = await self.find_site(site.parent_site_id)
            if parent is None:
                raise InvalidInput(f"parent site {site.parent_site_id!r} does not exist")
            self._check_parent_kind(site, parent)
            chain = await self._chain_from(parent)
            if any(s.id == site.id for s in chain):
                raise InvalidInput("that parent would make a loop in the network")
        await self._store.map_set(SITES, site.id, encode(site))
        await self._log(actor, "site", site.id)
        return site

    @staticmethod
    def _check_parent_kind(site: Site, parent: Site) -> None:
        if site.kind in MEDICAL_LEVEL:
            if (
                parent.kind not in MEDICAL_LEVEL
                or MEDICAL_LEVEL[parent.kind] <= MEDICAL_LEVEL[site.kind]
            ):
                raise InvalidInput(
                    f"a {site.kind.value}'s parent must be a medical site of a higher level, "
                    f"not a {parent.kind.value}"
                )
        elif site.kind is SiteKind.CLASSROOM and parent.kind is not SiteKind.SCHOOL:
            raise InvalidInput("a classroom's parent must be a school")
        elif site.kind is SiteKind.SCHOOL and parent.kind is not SiteKind.SCHOOL:
            raise InvalidInput("a school's parent must be a school")

    async def find_site(self, site_id: str) -> Site | None:
        raw = await self._store.map_get(SITES, site_id)
        return None if raw is None else decode_as(raw, Site)

    async def get_site(self, site_id: str) -> Site:
        site = await self.find_site(site_id)
        if site is None:
            raise NotFound(f"no site {site_id!r}")
        return site

    async def delete_site(self, site_id: str, *, actor: str = "system") -> None:
        """Remove a site that no other site or expert points to."""
        await self.get_site(site_id)
        sites = await self.list_sites()
        if any(s.parent_site_id == site_id for s in sites):
            raise Conflict("other sites have this site as parent; move them first")
        if any(e.site_id == site_id for e in await self.list_experts()):
            raise Conflict("experts work at this site; move them first")
        await self._store.map_delete(SITES, site_id)
        await self._log(actor, "site_deleted", site_id)

    async def list_sites(
        self,
        *,
        kind: SiteKind | None = None,
        region: str | Sequence[str] | None = None,
        parent_site_id: str | None = None,
    ) -> list[Site]:
        """Sites filtered by kind, region prefix and parent, sorted by id."""
        prefix = parse_region(region)
        found = []
        for raw in (await self._store.map_all(SITES)).values():
            site = decode_as(raw, Site)
            if kind is not None and site.kind is not kind:
                continue
            if prefix and not region_matches(site.region, prefix):
                continue
            if parent_site_id is not None and site.parent_site_id != parent_site_id:
                continue
            found.append(site)
        return sorted(found, key=lambda s: s.id)

    async def escalation_chain(self, site_id: str) -> list[Site]:
        """The site and its parents up the network: village clinic, township health center,
        county hospital, city or provincial hospital."""
        return await self._chain_from(await self.get_site(site_id))

    async def _chain_from(self, site: Site) -> list[Site]:
        chain = [site]
        while chain[-1].parent_site_id is not None:
            if len(chain) >= MAX_CHAIN:
                raise Conflict(f"the network above {site.id!r} is deeper than {MAX_CHAIN} levels")
            parent = await self.find_site(chain[-1].parent_site_id)
            if parent is None or any(s.id == parent.id for s in chain):
                break
            chain.append(parent)
        return chain

    # --- experts ------------------------------------------------------------------------
    async def put_expert(self, expert: Expert, *, actor: str = "system") -> Expert:
        """Create or replace an expert (its site must exist), keeping the on-duty index."""
        expert = validated(expert)
        if expert.site_id is not None and await self.find_site(expert.site_id) is None:
            raise InvalidInput(f"site {expert.site_id!r} does not exist")
        if expert.kind is ExpertKind.DOCTOR and expert.on_duty and not expert.specialties:
            raise InvalidInput("a doctor on duty needs at least one specialty")
        previous = await self.find_expert(expert.id)
        await self._store.map_set(EXPERTS, expert.id, encode(expert))
        await self._reindex(previous, expert)
        await self._log(actor, "expert", expert.id)
        return expert

    async def _reindex(self, previous: Expert | None, current: Expert | None) -> None:
        old, new = _index_keys(previous), _index_keys(current)
        data = encode(current) if current is not None else b""
        await asyncio.gather(
            *(self._store.map_delete(name, field) for name, field in old - new),
            *(self._store.map_set(name, field, data) for name, field in new),
        )

    async def find_expert(self, expert_id: str) -> Expert | None:
        raw = await self._store.map_get(EXPERTS, expert_id)
        return None if raw is None else decode_as(raw, Expert)

    async def get_expert(self, expert_id: str) -> Expert:
        expert = await self.find_expert(expert_id)
        if expert is None:
            raise NotFound(f"no expert {expert_id!r}")
        return expert

    async def delete_expert(self, expert_id: str, *, actor: str = "system") -> None:
        previous = await self.get_expert(expert_id)
        await self._store.map_delete(EXPERTS, expert_id)
        await self._reindex(previous, None)
        await self._log(actor, "expert_deleted", expert_id)

    async def set_on_duty(self, expert_id: str, on_duty: bool, *, actor: str = "system") -> Expert:
        """Put a doctor on or off duty (off duty: no new requests; current consults go on)."""
        previous = await self.get_expert(expert_id)
        if on_duty and previous.kind is ExpertKind.DOCTOR and not previous.specialties:
            raise InvalidInput("a doctor on duty needs at least one specialty")
        current = msgspec.structs.replace(previous, on_duty=on_duty)
        await self._store.map_set(EXPERTS, expert_id, encode(current))
        await self._reindex(previous, current)
        if self._audit is not None:
            await self._audit.append(
                actor, AuditAction.DUTY_CHANGE, detail={"expert": expert_id, "on_duty": on_duty}
            )
        return current

    async def list_experts(
        self,
        *,
        kind: ExpertKind | None = None,
        specialty: str | None = None,
        on_duty: bool | None = None,
        site_id: str | None = None,
        region: str | Sequence[str] | None = None,
    ) -> list[Expert]:
        """Experts filtered by kind, specialty (or subject), duty, site and the region prefix
        of their site, sorted by id. Reads the whole table: for screens, not hot paths."""
        prefix = parse_region(region)
        sites: dict[str, Site] = {}
        if prefix:
            sites = {s.id: s for s in await self.list_sites(region=prefix)}
        found = []
        for raw in (await self._store.map_all(EXPERTS)).values():
            expert = decode_as(raw, Expert)
            if kind is not None and expert.kind is not kind:
                continue
            if specialty is not None and specialty not in expert.specialties:
                continue
            if on_duty is not None and expert.on_duty is not on_duty:
                continue
            if site_id is not None and expert.site_id != site_id:
                continue
            if prefix and (expert.site_id is None or expert.site_id not in sites):
                continue
            found.append(expert)
        return sorted(found, key=lambda e: e.id)

    async def has_on_duty_doctor(self, specialty: str, site_id: str) -> bool:
        """Whether some doctor of `specialty` is on duty at `site_id` (nothing decoded)."""
        return bool(await self._store.map_all(on_duty_index(specialty, site_id)))

    async def on_duty_doctors(self, specialty: str, site_id: str) -> list[Expert]:
        """On-duty doctors of `specialty` at `site_id`, from the index (one store read)."""
        raw = await self._store.map_all(on_duty_index(specialty, site_id))
        return [decode_as(data, Expert) for data in raw.values()]

    # --- operators ----------------------------------------------------------------------
    async def put_operator(self, operator: Operator, *, actor: str = "system") -> Operator:
        operator = validated(operator)
        await self._store.map_set(OPERATORS, operator.id, encode(operator))
        await self._log(actor, "operator", operator.id)
        return operator

    async def get_operator(self, operator_id: str) -> Operator:
        raw = await self._store.map_get(OPERATORS, operator_id)
        if raw is None:
            raise NotFound(f"no operator {operator_id!r}")
        return decode_as(raw, Operator)

    async def delete_operator(self, operator_id: str, *, actor: str = "system") -> None:
        if not await self._store.map_delete(OPERATORS, operator_id):
            raise NotFound(f"no operator {operator_id!r}")
        await self._log(actor, "operator_deleted", operator_id)

    async def list_operators(self) -> list[Operator]:
        raw = await self._store.map_all(OPERATORS)
        return sorted((decode_as(v, Operator) for v in raw.values()), key=lambda o: o.id)
