"""What the benchmarks must know about this machine before NumPy is imported (no NumPy here).

A virtual machine whose balloon reports free memory to its host (virtio's free page reporting) gets that memory
back from the host a 4 KB page at a time when it touches it again. NumPy asks for transparent huge pages for every
array of 4 MB or more (``madvise``), and a huge page comes from the free blocks of 2 MB and more, the ones the
guest reported: on these machines a fresh array's first touch runs at 170-290 MB/s with huge pages and 2.7-2.8 GB/s
without (a gigabyte of ``np.ones`` in a new process, 8 s apart, alternated: 5.5-6.0 s against 0.35-0.37 s), while
memory the process freed a moment ago is reused at 5 GB/s either way. A stage run once in a fresh process, as
``make scale`` runs each, pays that for every new megabyte it holds, and more of them the larger the store: it
bends the curves upward. A training instance's memory is the instance's own, never reported, so the benchmarks
switch NumPy's huge pages off where the balloon reports (``NUMPY_MADVISE_HUGEPAGE=0``, which NumPy reads at
import); set it yourself to choose."""

from __future__ import annotations

import os
from pathlib import Path

VIRTIO_DEVICES = Path("/sys/bus/virtio/devices")
BALLOON = 0x0005  # virtio's device id of a memory balloon
FREE_PAGE_REPORTING = 5  # VIRTIO_BALLOON_F_REPORTING: its feature bit


def free_page_reporting(devices: Path = VIRTIO_DEVICES) -> bool:
    """Whether a virtio balloon of this machine reports free pages to its host (a bit string per device, bit 0
    first, in ``features``)."""
    for device in devices.glob("*") if devices.is_dir() else ():
        try:
            kind = int((device / "device").read_text().strip(), 16)
            features = (device / "features").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == BALLOON and len(features) > FREE_PAGE_REPORTING and features[FREE_PAGE_REPORTING] == "1":
            return True
    return False


def numpy_pages(devices: Path = VIRTIO_DEVICES) -> str:
    """Sets ``NUMPY_MADVISE_HUGEPAGE=0`` for this process and its children where the machine reports free pages
    and it is not set already (call before NumPy is imported); says what the benchmarks run with."""
    if "NUMPY_MADVISE_HUGEPAGE" not in os.environ and free_page_reporting(devices):
        os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"
        return "NumPy's huge pages off (NUMPY_MADVISE_HUGEPAGE=0): this machine's balloon reports free pages"
    chosen = os.environ.get("NUMPY_MADVISE_HUGEPAGE")
    return f"NUMPY_MADVISE_HUGEPAGE={chosen}, as set" if chosen is not None else "NumPy's huge pages as NumPy sets them"
