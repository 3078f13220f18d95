"""Backup modules: each file here is one, named by its file (plugins.py)."""
