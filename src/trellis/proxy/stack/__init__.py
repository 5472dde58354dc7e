"""The request path behind a listener's route match: fault → timeout → retry → load
balance → connection pool → upstream (`exchange` composes them)."""
