"""The package version, recorded in every results folder."""

__version__ = "0.1.0"
