"""sitsmon pipeline stage: alerts."""
