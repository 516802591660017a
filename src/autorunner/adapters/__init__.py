"""Adapters: the only code that acts on the outside world (``base.Adapter``)."""
