"""Peak memory of one dense ``DNCHead.update``: C = 150, K = 10, D = 512, a 4x512x64x64 map.

Uses the public API only, so the same file measures any version of deepnc: run it with
``PYTHONPATH=<a checkout>/src`` to compare versions. Linux only (it reads the peak
resident size, VmHWM, from /proc after resetting it).

    python -m benchmarks.dense_update_peak
"""

from __future__ import annotations

import sys

import torch

from benchmarks.common import status_bytes
from deepnc import DNCHead


def main() -> int:
    torch.manual_seed(0)
    head = DNCHead(512, 150, num_subcentroids=10, memory_size=0)
    maps, masks = torch.randn(4, 512, 64, 64), torch.randint(0, 150, (4, 64, 64))
    for _ in range(2):  # seeding, then one steady-state update
        head.update(maps, masks)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset the peak resident size to now
    before = status_bytes("VmRSS")
    head.update(maps, masks)
    print(
        f"dense DNCHead.update, 16,384 pixels, C=150, K=10, D=512: peak +"
        f"{(status_bytes('VmHWM') - before) / 2**20:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
