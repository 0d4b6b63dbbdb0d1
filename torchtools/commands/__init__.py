"""One module per command: options -> a config -> calls into the core -> prints."""
