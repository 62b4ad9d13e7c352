"""Media worker processes: the process itself, the pool signaling drives, and the socket
channel between them."""
