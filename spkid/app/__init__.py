"""The application layer: the ``spkid`` command line, the HTTP service and the figures they draw."""
