"""The CPU: Unicorn reset for entry, the run loop and its stops, the TLB-fill
glue to the Python MMU model, the probes that turn instructions into events,
the window tracker, and exception delivery."""
