"""What a finished model is and does: final training and test, checkpoints, and their uses.

- ``final``: final training on all 60,000 images, test metrics, saving the result
- ``checkpoint``: the checkpoint format (state_dict + JSON), save and load
- ``figures``: confusion-matrix and prediction-grid PNGs
- ``predict``: image files -> MNIST-style digits -> labels
- ``demo``: a checkpoint as a self-contained draw-a-digit page (template ``demo_page.html``)
- ``export``: a checkpoint as an ONNX model that takes raw pixels

May import the root modules and ``training``.
"""
