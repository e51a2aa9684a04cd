"""Photo intake and encrypted storage."""
