"""The broker benchmark: matching latency over a loaded queue and claim throughput under a race.

It loads a provincial network (a provincial hospital and four city hospitals, 200 village
clinics under them), `experts` on-duty doctors spread over the five hospitals and eight
specialties, and `tickets` waiting requests (70 % routine, 25 % urgent, 5 % emergency, requested
over the last two hours). Requests go in through `ConsultService.import_tickets`: stored and
queued exactly as `request` does, without its audit entry, event and token, so a Redis load
takes seconds. Then it times, `samples` times each, matching one doctor against the queue
(`tickets_for_expert`, what a doctor console reads) and one request against the doctors
(`match_experts`). Finally `claimers` doctors of one specialty at one hospital race through
that queue's requests in the same order, each claiming every request; `double_claims` counts
requests more than one claim call won (it must be 0).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from broker.audit import AuditLog
from broker.consult_state import ConsultTicket
from broker.consults import ConsultService
from broker.directory import Directory
from broker.errors import Conflict
from broker.models import Actor, Expert, ExpertKind, Role, Site, SiteKind, Urgency
from broker.store import Store
from broker.tokens import Keyring, TokenService

SPECIALTIES = ("内科", "外科", "儿科", "妇产科", "骨科", "皮肤科", "眼科", "耳鼻喉科")
HOSPITALS = ("bench-prov", "bench-city-1", "bench-city-2", "bench-city-3", "bench-city-4")
CLINICS_PER_HOSPITAL = 40
LOAD_CONCURRENCY = 64
URGENCY_MIX = ((Urgency.ROUTINE, 0.70), (Urgency.URGENT, 0.25), (Urgency.EMERGENCY, 0.05))
LANGUAGE_MIX = (("zh", 0.9), ("bo", 0.05), ("ug", 0.05))


async def _bounded(jobs: Iterable[Awaitable[Any]], limit: int = LOAD_CONCURRENCY) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Awaitable[Any]) -> Any:
        async with gate:
            return await job

    return await asyncio.gather(*(run(job) for job in jobs))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _pick(rng: random.Random, mix: tuple[tuple[Any, float], ...]) -> Any:
    return rng.choices([v for v, _w in mix], weights=[w for _v, w in mix])[0]


async def _timed(samples: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    durations = []
    for _ in range(samples):
        start = time.perf_counter()
        await call()
        durations.append((time.perf_counter() - start) * 1000)
    return durations


async def run_broker_bench(
    store: Store,
    *,
    tickets: int = 10_000,
    experts: int = 2_000,
    claimers: int = 50,
    samples: int = 500,
    seed: int = 7,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark on `store` (which it fills) and return its figures."""
    say = progress or (lambda _message: None)
    rng = random.Random(seed)
    now = time.time()
    audit = AuditLog(store, time.time)
    directory = Directory(store)
    tokens = TokenService(store, Keyring.generate("bench"), time.time)
    consults = ConsultService(store, directory, tokens, audit, time.time)

    started = time.perf_counter()
    say("loading the network")
    await directory.put_site(
        Site(id=HOSPITALS[0], name="省医院", kind=SiteKind.PROVINCIAL_HOSPITAL)
    )
    await _bounded(
        directory.put_site(
            Site(
                id=h,
                name=f"市医院{n}",
                kind=SiteKind.CITY_HOSPITAL,
                parent_site_id=HOSPITALS[0],
            )
        )
        for n, h in enumerate(HOSPITALS[1:], start=1)
    )
    clinics = [f"{h}-vc-{c}" for h in HOSPITALS for c in range(CLINICS_PER_HOSPITAL)]
    await _bounded(
        directory.put_site(
            Site(
                id=clinic,
                name=f"卫生室{n}",
                kind=SiteKind.VILLAGE_CLINIC,
                parent_site_id=clinic.rsplit("-vc-", 1)[0],
            )
        )
        for n, clinic in enumerate(clinics)
    )
    say(f"loading {experts} doctors")
    doctors = []
    for n in range(experts):
        first = SPECIALTIES[n % len(SPECIALTIES)]
        extra = rng.choice(SPECIALTIES) if rng.random() < 0.3 else first
        doctors.append(
            Expert(
                id=f"bench-d{n}",
                name=f"医生{n}",
                kind=ExpertKind.DOCTOR,
                specialties=tuple(dict.fromkeys((first, extra))),
                languages=("zh", "bo") if rng.random() < 0.05 else ("zh",),
                capacity=rng.choice((1, 2, 3)),
                on_duty=True,
                site_id=HOSPITALS[(n // len(SPECIALTIES)) % len(HOSPITALS)],
            )
        )
    await _bounded(directory.put_expert(d) for d in doctors)
    say(f"loading {tickets} waiting requests")

    routes = {
        (clinic, specialty): await consults.route(clinic, specialty)
        for clinic in clinics
        for specialty in SPECIALTIES
    }

    def waiting_ticket(n: int) -> ConsultTicket:
        clinic, specialty = clinics[n % len(clinics)], rng.choice(SPECIALTIES)
        _site, route, level = routes[(clinic, specialty)]
        requested_at = now - rng.uniform(0, 7200)
        return ConsultTicket(
            id=f"bench-c{n}",
            clinic_site_id=clinic,
            specialty=specialty,
            urgency=_pick(rng, URGENCY_MIX),
            language=_pick(rng, LANGUAGE_MIX),
            reason="bench",
            requested_at=requested_at,
            requested_by=clinic,
            route=route,
            level=level,
            level_since=requested_at,
        )

    batch = 100
    made = [waiting_ticket(n) for n in range(tickets)]
    await _bounded(consults.import_tickets(made[i : i + batch]) for i in range(0, tickets, batch))
    ticket_ids = [t.id for t in made]
    load_s = time.perf_counter() - started

    say(f"matching ({samples} samples each way)")
    expert_ids = [d.id for d in doctors]
    expert_ms = await _timed(
        samples, lambda: consults.tickets_for_expert(rng.choice(expert_ids), limit=20)
    )
    ticket_ms = await _timed(samples, lambda: consults.match_experts(rng.choice(ticket_ids)))
    both = expert_ms + ticket_ms

    say(f"{claimers} doctors racing for the same requests")
    specialty, site = SPECIALTIES[0], HOSPITALS[1]
    team = [d for d in doctors if specialty in d.specialties and d.site_id == site][:claimers]
    team = [await directory.put_expert(_roomy(d)) for d in team]
    queued = await consults.tickets_for_expert(team[0].id, limit=200)
    race = [t.id for t in queued if t.specialty == specialty]
    wins: Counter[str] = Counter()

    async def claimer(expert: Expert) -> int:
        attempts = 0
        for ticket_id in race:
            attempts += 1
            try:
                await consults.claim(ticket_id, Actor(expert.id, Role.DOCTOR))
            except Conflict:
                continue
            wins[ticket_id] += 1
        return attempts

    race_start = time.perf_counter()
    attempts = sum(await asyncio.gather(*(claimer(d) for d in team)))
    race_s = time.perf_counter() - race_start
    holders = Counter(t.expert_id for t in await asyncio.gather(*(consults.get(i) for i in race)))
    unclaimed = sum(1 for i in race if wins[i] == 0)
    return {
        "store": store.name,
        "tickets": tickets,
        "experts": experts,
        "specialties": len(SPECIALTIES),
        "hospitals": len(HOSPITALS),
        "samples": samples,
        "match_p50_ms": round(statistics.median(both), 3),
        "match_p99_ms": round(_percentile(both, 0.99), 3),
        "match_expert_p50_ms": round(statistics.median(expert_ms), 3),
        "match_expert_p99_ms": round(_percentile(expert_ms, 0.99), 3),
        "match_ticket_p50_ms": round(statistics.median(ticket_ms), 3),
        "match_ticket_p99_ms": round(_percentile(ticket_ms, 0.99), 3),
        "claimers": len(team),
        "raced_tickets": len(race),
        "claim_attempts": attempts,
        "claims_per_s": round(sum(wins.values()) / race_s, 1),
        "claim_attempts_per_s": round(attempts / race_s, 1),
        "double_claims": sum(1 for count in wins.values() if count > 1),
        "unclaimed_after_race": unclaimed,
        "holders_agree": sum(holders.values()) == len(race) and None not in holders,
        "load_s": round(load_s, 2),
    }


def _roomy(expert: Expert) -> Expert:
    """The racing doctors get the largest capacity, so capacity is not what stops them."""
    return Expert(
        id=expert.id,
        name=expert.name,
        kind=expert.kind,
        specialties=expert.specialties,
        languages=expert.languages,
        capacity=50,
        on_duty=True,
        site_id=expert.site_id,
    )
