"""Job files: the JSON schema, validation with every problem reported, and loading into a `Job`."""

from babelmr.job.loader import job_schema, load_job, validate_job_data
from babelmr.job.model import CsvOptions, ExternalInput, Input, Job, Output, Split, Stage, StageInput

__all__ = [
    "CsvOptions",
    "ExternalInput",
    "Input",
    "Job",
    "Output",
    "Split",
    "Stage",
    "StageInput",
    "job_schema",
    "load_job",
    "validate_job_data",
]
