"""The dialogue engine: sessions, intents, follow-ups, forms and hand-offs."""
