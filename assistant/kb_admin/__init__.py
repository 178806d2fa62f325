"""Administrators keep the knowledge base current in the browser: uploads, front-matter edits,
retiring and restoring documents, indexed in the background with progress, every change audited."""
