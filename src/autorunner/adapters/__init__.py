"""Adapters: the only code that acts on the outside world (``base.Adapter``)."""

KINDS = ("exchange", "http", "notify", "relay", "telegram")
"""Every kind of action an adapter exists for; a policy may name no other."""
