"""The pieces of the ``report`` stage: reading the pipeline's metrics, checking its MLflow
runs, and rendering tables, figures and plot data."""
