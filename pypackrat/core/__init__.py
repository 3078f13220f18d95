"""The domain core, one place for each fact: names, chains, temporary names,
the dar key, the database clients' connection, secrets."""
