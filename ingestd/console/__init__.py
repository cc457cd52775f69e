"""What a person sees on a terminal: the live progress line, the summary after a job, and
following a job another process runs. Used by `ingestd.cli` only; plain standard library
over the job's manifest (docs/progress.md), so a one-shot's start-up stays cheap."""
