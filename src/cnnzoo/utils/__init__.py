"""Helpers for the entry points: instantiation from config and run records."""
