"""AWS Glue's entry script for the archive conversion job (Glue 5.1: Spark 3.5, Python 3.11): the archive's gzip
JSON objects rewritten as Parquet on Glue's workers by ``shopwise_jobs.spark_convert`` — the conversion
``shopwise archive convert`` runs in one process. Glue passes ``--bucket`` with its own arguments."""

import sys

from shopwise_jobs.spark_convert import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], glue=True))
