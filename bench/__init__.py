"""The benchmark harness of issue 7: ingestd side by side with the floor (cp + sync,
openssl) and with its peers (rclone, aws s3 sync), on generated corpora.

`python -m bench` (or `make bench`) runs every case; `--smoke` runs a tiny variant that
`make test` exercises so the harness cannot rot. Nothing is written into the repository
except `bench/results/` (gitignored) and, for a full run, `bench/RESULTS.md`.
"""
