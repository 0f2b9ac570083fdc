"""Contract suites that drive a client under test and check it against the documented rules."""
