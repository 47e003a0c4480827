"""Pure logic shared by the store and its clients: no I/O, no NATS."""
