"""SageMaker entrypoint of the import job (script mode), for uploads too large for the import function:
`python imports.py --import_id ID --kind events|items --bucket B --key K --batch_id D [--lines N]`; the upload is the
`upload` channel's copy on the instance's disk."""

import sys

from shopwise_jobs.imports import main

if __name__ == "__main__":
    sys.exit(main())
