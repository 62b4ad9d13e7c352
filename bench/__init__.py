"""Benchmarks (`tongxin bench …`): figures, not tests. They drive the product from outside, the way
an operator would; nothing under broker/, signaling/ or media/ imports them."""
