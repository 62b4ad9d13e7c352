"""Forwarding: one published track fanned out to its subscribers as rewritten RTP packets,
keyframe requests towards the publisher, and the pacer that spaces each downlink's video.

- `forwarder`: `InboundTrack`, the per-packet fan-out (and the names callers import);
- `outbound`: `OutboundStream`, one subscriber's copy of a track, made of
  `continuity` (sequence numbers and timestamps), `layers` (temporal-layer dropping),
  `emit` (the one packet writer), `retransmit` (NACK answers), `reports` (sender reports,
  RTT) and `feedback` (the one RTCP dispatcher);
- `keyframe_requests`: PLIs towards the publisher, coalesced;
- `pacer`: a downlink's video spaced at a rate.
"""
