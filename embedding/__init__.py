"""What the index builder and the search service share: the model card, image
preprocessing and the onnxruntime embedder, so that catalogue and queries are
embedded exactly the same way."""
