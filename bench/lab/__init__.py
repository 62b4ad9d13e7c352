"""The weak-link lab: impaired links between network namespaces (tc tbf rate caps, nft random
loss), the browsers and aiortc peers that run across them, and the QoE read from what they saw."""
