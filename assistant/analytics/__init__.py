"""Residents' feedback on answers, and the queries behind the administrators' analytics page."""
