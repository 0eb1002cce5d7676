"""sitsmon pipeline stage: dashboards."""
