"""Running an exported model with onnxruntime: prepared images in, unit vectors out."""

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .card import ModelCard, read_card
from .preprocess import Recipe, load, prepare


class Embedder:
    """An ONNX embedding model and the recipe that prepares its input."""

    def __init__(
        self,
        model_path: Path,
        recipe: Recipe | None = None,
        threads=None,
        spinning: bool = True,
    ):
        self.model_path = Path(model_path)
        self.card: ModelCard = read_card(self.model_path)
        self.recipe = recipe or default_recipe(self.card)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads busy-wait between operators: fastest for one process
        # alone, but they take cores that other processes are waiting for.
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
        self.session = ort.InferenceSession(
            str(self.model_path), options, providers=["CPUExecutionProvider"]
        )
        self.dim = self.card.embedding_dim

    def prepare(self, img) -> np.ndarray:
        return prepare(img, self.recipe, self.card.mean, self.card.std)

    def load(self, source, max_pixels=None) -> np.ndarray:
        kwargs = {"max_pixels": max_pixels} if max_pixels else {}
        return load(source, self.recipe, self.card.mean, self.card.std, **kwargs)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """NCHW float32 inputs -> N x dim float32 unit vectors."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        vectors = self.session.run(["embedding"], {"pixels": batch})[0]
        if self.recipe.flip:
            mirrored = np.ascontiguousarray(batch[..., ::-1])
            vectors = vectors + self.session.run(["embedding"], {"pixels": mirrored})[0]
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
        return vectors.astype(np.float32, copy=False)


def default_recipe(card: ModelCard) -> Recipe:
    """A 3:4 portrait input with about the pixel count of the card's input size
    (224x224 -> 256x192): catalogue photos are 3:4 portraits, and the evaluation
    finds this shape better than squashing or padding them to a square at the
    same cost. Sides are multiples of 32, the networks' total stride."""
    height, width = card.input_size
    tall = max(32, round((height * width * 4 / 3) ** 0.5 / 32) * 32)
    return Recipe(height=tall, width=tall * 3 // 4)
