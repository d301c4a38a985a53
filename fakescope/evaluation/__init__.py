"""Evaluation: read benchmark datasets, run a model on them, measure, report and compare.

`fakescope eval DATASET... --model M --out DIR` is the command-line face (see `cli`); the pieces:

- `datasets`, `readers`, `fakebench`: published dataset layouts read into labelled samples.
- `metrics`: accuracy, detection rates, AP, ROC-AUC, bootstrap intervals (scikit-learn maths).
- `robustness`: in-the-wild degradations (JPEG, downscaling, crops, screenshot-like resampling).
- `protocols`: the quantitative (p_fake) and closed-ended (generated answer) protocols.
- `runner`: batched, resumable predictions written to `predictions.csv`.
- `results`: prediction rows to metrics; `evaluate`: one run end to end.
- `report`, `plots`: its outputs (report.md, PNG curves, the reliability diagram); `compare`:
  two runs side by side; `calibrate`: Platt scaling of p_fake fitted on a finished run.
- `output_files`: every output written whole (beside its name, then renamed) or not at all.
"""
