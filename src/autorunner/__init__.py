"""autorunner: the agent runner for Elfa Auto."""

__version__ = "0.1.0"
