"""SageMaker training entrypoint (script mode): `python train.py --top_k 50 ...`."""

import sys

from shopwise_jobs.training import main

if __name__ == "__main__":
    sys.exit(main())
