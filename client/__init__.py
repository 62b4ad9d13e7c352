"""A Tongxin participant as a Python program: join link -> credential -> `/ws` -> aiortc media,
with pre-encoded test clips to publish. Used by `tongxin client`, the benchmarks and the tests."""
