"""Store backends: the source of truth (``base.Store`` and ``base.Audit``)."""
