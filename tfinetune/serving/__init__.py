"""Step 5 of the flow: the trained model leaves Keras and is served.

- `signatures`: the serving signatures (encoded images, pixels of any size, tf.Examples).
- `export`: SavedModels for TF Serving in its versioned layout, checked against Keras.
- `classifier`: `Classifier`, what every loaded artifact offers (class names, predictions).
- `tflite`: TFLite files, float or quantized, and their interpreter.
- `inference`: loading any artifact (SavedModel, .keras, .tflite) to predict files.
- `verify`: an artifact against its Keras model on real images, in a fresh process.
"""
