#!/usr/bin/python3
"""reader.py - the loads the mount bench times: how an engine reads weights.

Why a script of its own: each measured load is a separate process, timed and measured (peak
RSS, CPU) by /usr/bin/time like every other contender, and it must read the same way
whatever it reads from (the mount, rclone's mount, local disk).

    reader.py seq FILE...      read each file front to back in 1 MiB read()s into one
                               reused buffer (what `dd bs=1M of=/dev/null` does)
    reader.py tensors FILE...  the safetensors loader's pattern: read the 8-byte header
                               length and the JSON header with read(), then mmap the file
                               and copy out every tensor in header order, 1 MiB at a time
                               from the mapping into a reused buffer, so every page of
                               every tensor is faulted in through the mapping
    reader.py by-name FILE...  the same in tensor-name order, as `for k in
                               safe_open(f).keys(): f.get_tensor(k)` does (keys() is
                               sorted); when the header is not in name order (modelgen's
                               are not: layer by layer, q/k/v/o/up) this jumps around
    --wait SECONDS             wait up to SECONDS for each FILE to appear first (a mount
                               still listing); the wait is part of the measured time

Prints one JSON line: bytes read, tensors touched, seconds from the first open to the end
(start-up of the interpreter excluded), and the seconds spent waiting for files. Nothing is
hashed here, so the reader costs the same CPU on every source; the bench checks the sha256
of what was served afterwards.
"""

import json
import mmap
import os
import struct
import sys
import time

MiB = 1 << 20


def wait_for(path, limit):
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            sys.exit("reader: %s did not appear within %.0fs" % (path, limit))
        time.sleep(0.005)


def read_seq(path, buf):
    n = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            got = os.readv(fd, [buf])
            if got <= 0:
                break
            n += got
    finally:
        os.close(fd)
    return n, 0


def read_tensors(path, buf, by_name=False):
    view = memoryview(buf)
    with open(path, "rb") as f:
        hlen = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(hlen))
        base = 8 + hlen
        size = os.fstat(f.fileno()).st_size
        n, tensors = 8 + hlen, 0
        if size <= base:
            return n, 0
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        try:
            mv = memoryview(mm)
            items = sorted(header.items()) if by_name else header.items()
            for name, t in items:  # JSON object order = the order in the file
                if name == "__metadata__":
                    continue
                a, b = t["data_offsets"]
                a, b = base + a, base + b
                if not (base <= a <= b <= size):
                    sys.exit("reader: %s: tensor %s out of the file" % (path, name))
                while a < b:
                    k = min(MiB, b - a)
                    view[:k] = mv[a:a + k]
                    a += k
                n += t["data_offsets"][1] - t["data_offsets"][0]
                tensors += 1
            mv.release()
        finally:
            mm.close()
    return n, tensors


def main(argv):
    wait = 0.0
    if len(argv) >= 2 and argv[0] == "--wait":
        wait, argv = float(argv[1]), argv[2:]
    if len(argv) < 2 or argv[0] not in ("seq", "tensors", "by-name"):
        sys.exit(__doc__)
    mode, files = argv[0], argv[1:]
    buf = bytearray(MiB)
    t0 = time.monotonic()
    total = tensors = 0
    waited = 0.0
    for path in files:
        if wait:
            w0 = time.monotonic()
            wait_for(path, wait)
            waited += time.monotonic() - w0
        if mode == "seq":
            n, k = read_seq(path, buf)
        else:
            n, k = read_tensors(path, buf, by_name=mode == "by-name")
        total += n
        tensors += k
    print(json.dumps({"mode": mode, "files": len(files), "bytes": total, "tensors": tensors,
                      "secs": round(time.monotonic() - t0, 4), "waited": round(waited, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
