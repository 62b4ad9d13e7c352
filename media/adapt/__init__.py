"""Bandwidth adaptation per subscriber: the downlink estimate, the budget between tracks, the
rung decision, padding probes, the publisher cap and the transcoded low rung."""
