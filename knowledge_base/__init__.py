"""Policy corpus, ingestion, chunking, indexes, hybrid retrieval and grounded answers."""
