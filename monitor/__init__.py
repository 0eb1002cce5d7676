"""sitsmon pipeline stage: monitor."""
