"""AWS Glue's entry script for the training data set job (Glue 5.1: Spark 3.5, Python 3.11): the same code as
``shopwise dataset build`` runs in PySpark's local mode, ``shopwise_jobs.spark_dataset``, here on Glue's workers.
Glue passes the job's arguments (``--archive``, ``--out``, ``--days``, ``--categories``) with its own
(``--JOB_NAME``, ...); the packages come from ``--extra-py-files`` (``shopwise.zip``) and pydantic from
``--additional-python-modules``."""

import sys

from shopwise_jobs.spark_dataset import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], glue=True))
