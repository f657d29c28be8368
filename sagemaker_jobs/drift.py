"""SageMaker entrypoint of the scheduled drift job (script mode): `python drift.py --features_table T ...`."""

import sys

from shopwise_jobs.drift_job import main

if __name__ == "__main__":
    sys.exit(main())
