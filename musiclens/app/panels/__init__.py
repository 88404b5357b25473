"""Dock panels. Panels never compute: they show what the session hands them and ask it for more."""
