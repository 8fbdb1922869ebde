"""Local development stack: Azurite, a local Functions host and stand-ins; never deployed."""
