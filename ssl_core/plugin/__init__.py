"""The plugin host: hook specifications, the component registry, entry-point loading."""
