"""Accounts and tokens: registration, login, refresh rotation, logout and the access guard."""
