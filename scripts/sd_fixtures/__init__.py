"""Fixture groups for the diffusion crate, one module per group (see gen_fixtures.py)."""
