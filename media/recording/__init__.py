"""Recording: a room's tracks written undecoded as they pass, and the programme (HLS) made
from them after the session."""
