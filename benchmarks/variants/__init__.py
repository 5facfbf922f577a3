"""The variants compared: each ``run(ctx) -> Result`` answers one query on one scale factor."""
