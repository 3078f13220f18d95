"""The domain core: names, chains, temporary names, the dar key, secrets (one place each)."""
