"""wrkparse.py - the numbers in wrk's summary, for the load test (tests/integration/test_load.py)
and the API benchmark (tests/bench/api_load.py). Standard library only."""

import re


def ms(value):
    """wrk's latency ("812.00us", "1.50ms", "2.01s", "1.00m") in milliseconds."""
    for unit, mult in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 6e4)):
        if value.endswith(unit):
            return float(value[:-len(unit)]) * mult
    return float(value)


def parse(text):
    """{requests (None without a summary), rps, p50, p99, max (ms), non2xx,
    socket_errors {connect, read, write, timeout}, errors (non2xx + socket errors), text}."""
    r = {"requests": None, "rps": 0.0, "p50": None, "p99": None, "max": None, "non2xx": 0,
         "socket_errors": {}, "text": text}
    for line in text.splitlines():
        p = line.split()
        if len(p) == 2 and p[0] in ("50%", "99%"):
            r["p" + p[0][:-1]] = ms(p[1])
        elif p[:1] == ["Latency"] and len(p) >= 4:
            r["max"] = ms(p[3])
        elif line.startswith("Requests/sec:"):
            r["rps"] = float(p[1])
        elif len(p) > 3 and p[1] == "requests" and p[2] == "in":
            r["requests"] = int(p[0])
        elif "Non-2xx or 3xx responses:" in line:
            r["non2xx"] = int(p[-1])
        elif line.strip().startswith("Socket errors:"):
            r["socket_errors"] = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", line.split(":", 1)[1])}
    r["errors"] = r["non2xx"] + sum(r["socket_errors"].values())
    return r
