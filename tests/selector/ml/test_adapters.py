"""Imported PRMs scored through their own layouts (tiny random models of the same shapes)."""

from __future__ import annotations
