"""Embed a catalogue into an exact L2 FAISS index with its metadata."""
