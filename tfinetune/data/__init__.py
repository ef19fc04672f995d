"""Step 1 of the flow: labelled files, arrays, TFRecords or TFDS become `tf.data` datasets.

Modules, in the order the data passes through them:

- `limits`: the bounds on what is decoded, each raised by an environment variable.
- `headers`: image dimensions from file headers, so decompression bombs are refused.
- `images`: decode and resize encoded images (shared with the serving graphs).
- `hashes`: perceptual hashes, and the near-duplicate pairs they reveal.
- `files`: `LabelledFiles`, `BadFile`; find unreadable files (decoding and hashing images,
  or reading headers only for large inputs); seeded splits of file lists.
- `scan_record`: what checking files found, kept so that a resumed run reads no file twice.
- `folders`: list a folder of class sub-folders.
- `tables`: labelled files from CSV files or `(path, label)` rows.
- `exclude`: the files a person chose to leave out (`--exclude`, a `tfinetune clean` report).
- `labelled`: the labelled examples a model is checked or scored on (folder or CSV).
- `text`: labelled texts from CSV files, and their datasets.
- `wav`: WAV bytes to samples (PCM 8 to 32 bits, float), bounded, in the graph.
- `audio`: sound files: decoding, resampling, clips, labelled folders and datasets.
- `splits`: seeded, stratified split indices and class weights.
- `augment`: augmentation policies from Keras preprocessing layers.
- `pipeline`: `PipelineOptions` and the one `tf.data` pipeline every source goes through.
- `decode_log`: which training elements decoded, to name those that failed while training.
- `memory_cache`: the in-memory cache of decoded batches the first epoch fills.
- `datasets`: `ImageData`, and datasets from files, folders and arrays.
- `records`: TFRecord shards (`tfinetune convert`) and reading them back.
- `tfds`: TFDS datasets prepared in a local folder.
- `record_index`: `RecordIndex`, where each record of shards or TFDS is, and its label.
- `shards`: shards and `tfds:NAME` as a run's data, labels indexed in one pass.
- `synthetic`: shape images for the demo and the tests.
"""
