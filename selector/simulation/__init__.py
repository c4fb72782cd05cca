"""Simulating the active-learning loop: 80/20 selection against uniform sampling.

``pool``, ``oracle`` and ``report`` are pure Python (no Django, no torch) and tested on their
own; ``runner`` drives the real selector and labeling services in throw-away databases.
"""
