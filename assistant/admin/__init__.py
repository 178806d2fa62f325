"""Centre administrators' pages under /admin (analytics; the console's login and look)."""
