"""Ingest: device messages in, normalised readings and kept rejections out."""
