"""Step 4 of the flow: how good the trained model is, in numbers, files and figures.

- `metrics`: NumPy helpers shared by the reports (ratios, ROC AUC, calibration bins).
- `report`: the single-label `ClassificationReport` and top losses.
- `multilabel`: the `MultiLabelReport` with per-class thresholds.
- `regression`: the `RegressionReport` (MAE, RMSE, R²) and its predicted-vs-true plot.
- `predict`: running a model over a dataset and reporting on it.
- `calibration`: temperature scaling, fitted on validation predictions.
- `plots`: confusion matrix, reliability diagram and image galleries.
- `outputs`: writing a report's metrics, summary and figures to a folder.
"""
