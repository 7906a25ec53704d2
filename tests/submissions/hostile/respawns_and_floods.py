# hostile: after importing, prints until the file size limit, then exits between probes, over and over, hoping for endless fresh workers and log files
# expect: score == 0
# reason: printed more than 4 MiB
import os
import signal
import sys

_child = sys.modules.get("bngrader_rt._child")
if _child is not None:
    _send = _child._send

    def _flood_after_ready(out, header, arrays=None):
        _send(out, header, arrays)
        if header.get("kind") == "ready":
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            chunk = b"flood-987654 " * 80000
            for fd in (1, 2):
                try:
                    for _ in range(100):
                        os.write(fd, chunk)
                except OSError:
                    pass
            os._exit(0)

    _child._send = _flood_after_ready


def init_and_apply(seed, x, use_running_average):
    return x.reshape(-1)


class MyBatchNorm:
    pass
