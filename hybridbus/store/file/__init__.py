"""The file-backed store (``open_store(dir)``): segment files, group commit, recovery and
compaction.

The bytes are defined in ``records.py`` (read that first); this package decides when they
are written, fsynced, rewritten and read back. Its modules, in dependency order:

``disk.py``      blocking file helpers (pwrite, fsync, atomic JSON) and the fsync timings
``segment.py``   ``Seg`` (a segment file's slots) and the segment's index file
``writer.py``    the write path: appends, group commit, write errors, sealing segments
``compact.py``   rewriting segments that hold mostly deleted messages
``recovery.py``  rebuilding a stream from its files at start-up
``stream.py``    ``FileStream``: a stream with the above mixed in, reads, consumer files
``store.py``     ``FileStore``: the store directory, its lock, the executor, the fsync timer
"""
