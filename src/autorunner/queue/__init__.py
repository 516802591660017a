"""Queue backends: the delivery mechanism between ingress and workers (``base.Queue``)."""
