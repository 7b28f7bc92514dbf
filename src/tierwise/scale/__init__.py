"""High-volume batch: items streamed from a file or an iterable through the one path, resumable, on this
machine or a Ray cluster (see ``batch.py``)."""

from tierwise.scale.batch import BatchOptions, BatchReport, run_file, stream
from tierwise.scale.tasks import Classifier, TaskSpec, parse_labels

__all__ = ["BatchOptions", "BatchReport", "Classifier", "TaskSpec", "parse_labels", "run_file", "stream"]
