"""SageMaker entrypoint of the purge job (script mode): `python purge.py --plan_bucket B --plan_key K --buckets A,B`."""

import sys

from shopwise_jobs.purge import main

if __name__ == "__main__":
    sys.exit(main())
