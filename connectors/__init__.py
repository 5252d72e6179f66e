"""Platform connectors: one module per platform, registered through the `archiver.connectors` entry-point group."""
