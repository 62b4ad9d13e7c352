"""Tongxin's domain, with no aiohttp and no aiortc: the directory (`directory`), dual-teacher
classes (`classes`), consults (`consults`, with `matching` and the state machines), presence,
join tokens (`tokens`), the audit log (`audit`) and the events they publish (`events`), all
through the `store.Store` interface."""
