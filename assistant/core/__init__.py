"""The ground floor of Linli: what every other package shares — domain types, settings, errors,
the database and its migrations, the clock, personal-data masking and the event bus. It imports
nothing of Linli above it; `knowledge_base`, `intents`, `connectors` and the `assistant`
features all build on it."""
