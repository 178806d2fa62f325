"""The social-worker console (server-rendered HTML) and the ticket API behind it."""
