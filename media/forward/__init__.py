"""Forwarding: one published track fanned out to its subscribers as rewritten RTP packets,
keyframe requests towards the publisher, and the pacer that spaces each downlink's video."""
