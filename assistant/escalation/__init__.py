"""Escalation: tickets that hand a conversation to people, the queue workers pick them from,
SLA timers, and worker authentication."""
