"""AWS Glue, as the operator's CLI uses it on a deployed stack (``shopwise dataset build --stack``): one run of a
job with arguments over its defaults, followed to the end."""

from __future__ import annotations

import time
from collections.abc import Callable

from shopwise.dal.aws import client

DONE = ("SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT", "ERROR", "EXPIRED")


def run_job(name: str, arguments: dict[str, str], log: Callable[[str], None], poll_s: float = 15.0) -> str:
    """Start the job with ``arguments`` (its defaults for the rest), print each state change, return the last."""
    glue = client("glue")
    run_id = glue.start_job_run(JobName=name, Arguments=arguments)["JobRunId"]
    log(f"{name}: run {run_id} started")
    state = ""
    while state not in DONE:
        run = glue.get_job_run(JobName=name, RunId=run_id)["JobRun"]
        if run["JobRunState"] != state:
            state = run["JobRunState"]
            log(f"{name}: {state}" + (f" ({run.get('ErrorMessage', '')})" if state in DONE[1:] else ""))
        if state not in DONE:
            time.sleep(poll_s)
    return state
