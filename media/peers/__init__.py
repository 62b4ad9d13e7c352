"""The relay's aiortc peer connections: a participant's uplink (publishing) and downlink
(receiving), how they are configured, which codec is forwarded, and every bend of aiortc."""
