"""Streaming ingestion of e-commerce event CSV files into MySQL with an exactly-once effect."""
