"""Step 2 of the flow: a backbone and a head become one Keras model that takes raw pixels.

- `specs`: `BackboneSpec` (a backbone described by data) and layer grouping.
- `catalogue`: the `keras.applications` families, each with its normalisation, layer groups
  and ImageNet weight file name.
- `weights`: finding ImageNet weight files offline before any download.
- `backbones`: looking up and building backbones.
- `hub`: TF Hub / Kaggle / local SavedModels as trainable Keras 3 layers.
- `hub_groups`: a SavedModel's variables in named blocks, for staged unfreezing.
- `normalization`: the pixel normalisation each backbone's weights expect, as a layer.
- `options`: `HeadOptions` (plain data), the shape of the new head.
- `heads`: heads for one label, several labels or a number (`task_of` reads it back).
- `mirror`: mirror averaging inside the model (each image with its mirror).
- `classifier`: `build_classifier`, pixels -> normalisation -> backbone -> head.
- `saving`: `load_model`, a saved `.keras` file read back with clear errors.
"""
