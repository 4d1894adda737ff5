"""Using a trained run: embed images (embed.py), search them (search.py), export the network.

* `inference.run`: rebuild a run's network from its folder and load one of its checkpoints;
* `inference.images`: find the images of a folder tree or list file and embed them, skipping unreadable ones;
* `inference.index`: the index folder (embeddings, table, faiss index), written atomically, and exact search;
* `inference.export`: the embedding network alone as ONNX or TorchScript, checked against PyTorch;
* `inference.glyph_images`: the embedded glyphs as an image folder, to try the commands on;
* `inference.adapters`: the one place that calls the training code's entry points;
* `inference.cli`: what embed.py and search.py share as programs (one-line errors, interrupts).
"""
