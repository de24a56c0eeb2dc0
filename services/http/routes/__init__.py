"""Route handlers: keys, verify, health, audit. Thin: Struct in → service call → Struct out."""
