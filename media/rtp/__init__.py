"""RTP and RTCP as bytes: the fixed header and extensions, timing, sequence maps, the VP8 and
H.264 payloads, RED audio redundancy and the subscriber feedback the relay parses. Pure, no I/O."""
