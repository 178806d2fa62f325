"""Adapters at the edges: resident channels in (web, WeChat) and government-service connectors
out (later issues). They depend on the core, never the reverse."""
