"""Government service procedures and the connectors that file them."""
