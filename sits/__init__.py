"""sitsmon pipeline stage: sits."""
