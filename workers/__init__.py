"""Dramatiq workers: the broker built from settings and one actor per stage."""
