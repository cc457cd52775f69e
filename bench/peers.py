"""The S3 peers, configured the way their users configure them, but entirely through the
environment and files in the work directory: nothing is read from or written to the
user's ~/.config/rclone or ~/.aws, and nothing lands in the repository."""

from __future__ import annotations

from pathlib import Path

from . import measure, s3server, tools

RCLONE_FLAGS = ["--fast-list", "--use-server-modtime", "--update", "--transfers", "8"]


def rclone_copy(tool: tools.Tool, server: s3server.S3Server, bucket: str, dest: Path,
                workdir: Path, endpoint: str | None = None) -> measure.Finished:
    """`rclone copy` with its best flags for this job (the strongest peer); `endpoint`
    sends it through another address (the delay proxy) instead of straight to the server."""
    conf = workdir / "rclone.conf"
    conf.touch()
    env = tools.without_ca_bundle()
    env.update({
        "RCLONE_CONFIG": str(conf),
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": s3server.ACCESS_KEY,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": s3server.SECRET_KEY,
        "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint or server.endpoint,
        "RCLONE_CONFIG_BENCH_REGION": s3server.REGION,
        "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
    })
    argv = [tool.path, "copy", f"bench:{bucket}", str(dest), *RCLONE_FLAGS, "-q"]
    return measure.run(argv, env=env, cwd=workdir)


def aws_sync(tool: tools.Tool, server: s3server.S3Server, bucket: str, dest: Path,
             workdir: Path) -> measure.Finished:
    """`aws s3 sync` (awscli v2), the tool most people reach for first."""
    conf = workdir / "aws.conf"
    conf.write_text("[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n")
    creds = workdir / "aws.credentials"
    creds.touch()
    env = tools.without_ca_bundle()
    env.update({
        "AWS_CONFIG_FILE": str(conf),
        "AWS_SHARED_CREDENTIALS_FILE": str(creds),
        "AWS_ACCESS_KEY_ID": s3server.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": s3server.SECRET_KEY,
        "AWS_DEFAULT_REGION": s3server.REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    })
    argv = [tool.path, "s3", "sync", f"s3://{bucket}", str(dest), "--endpoint-url", server.endpoint,
            "--only-show-errors", "--no-progress"]
    return measure.run(argv, env=env, cwd=workdir)
