"""Step 5 of the flow: the trained model leaves Keras and is served.

- `export`: SavedModels for TF Serving, checked against the Keras model.
- `inference`: predicting image files with an exported SavedModel.
"""
