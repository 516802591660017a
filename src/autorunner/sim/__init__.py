"""Elfa Auto as the runner meets it, faked: the simulator family.

``simulator`` keeps the fake Auto's state (queries, executions, sessions, subscribers) and fires
triggers; ``api`` serves the contract's routes over it (both auth modes, request signing, every
call Elfa's official SDK makes); ``frames`` writes the webhook bodies and stream frames of each
documented version; ``sender`` signs and sends a delivery exactly as Auto does (``send-test-event``,
tests, benchmarks); ``demo`` runs the runner beside a simulator (``serve --demo``).
"""
