"""The trunk: one room served by several nodes (or worker processes), each publication
crossing to each other node once (see docs/media.md, "Trunk")."""
