"""KServe's storage-initializer entry point, restated: `python -m devkit.storage_initializer <uri> <dest> [...]`.

KServe's init container runs kserve/kserve python/storage-initializer/scripts/initializer-entrypoint with
`<storageUri> /mnt/models`; that script is not in the kserve-storage wheel, so this module restates its contract for
tests and for emulating the pod here: arguments in (source, destination) pairs, each destination created first,
`kserve_storage.Storage.download_files(sources, destinations)`, exit status 1 with the error logged on any
failure, usage and exit status 1 on an odd argument count. The download itself is KServe's own code.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from kserve_storage import Storage
    from kserve_storage.logging import configure_logging, logger

    configure_logging()
    if len(argv) < 2 or len(argv) % 2:
        print("Usage: initializer-entrypoint src_uri_0 dest_path_0 ... src_uri_n dest_path_n")
        return 1
    sources, destinations = argv[0::2], argv[1::2]
    logger.info("Initializing, args: (src_uri, dest_path): %s", list(zip(sources, destinations)))
    for destination in destinations:
        os.makedirs(destination, exist_ok=True)
    try:
        Storage.download_files(sources, destinations)
    except Exception as error:  # the entry point logs every failure and exits 1
        logger.error("Storage initialization failed: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
