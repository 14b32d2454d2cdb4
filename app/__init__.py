"""The search service: web upload form and JSON API."""
