"""Helpers shared by the test tiers and the demo: Salt file roots (saltenv), real processes (procs)."""
