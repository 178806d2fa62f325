"""Intent and slot recognition, emergency detection (built by the dialogue issue)."""
