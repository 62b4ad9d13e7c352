"""Rooms on the relay: who receives which track (`routing`), one room's connections (`room`)
and the rooms of one process (`host`)."""
