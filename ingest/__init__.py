"""sitsmon pipeline stage: ingest."""
