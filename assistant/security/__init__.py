"""The locks on Linli's doors: rate limits, request size limits, page headers and CSRF checks."""
