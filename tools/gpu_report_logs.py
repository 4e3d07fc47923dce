"""Parsers for the logs tools/gpu-check writes (used by tools/gpu-report).

Each .log is a sequence of blocks, one per stage:
    === begin ID | HH:MM:SS | COMMAND
    ...the command's output...
    === json ID            (optional: the JSON document / JSON lines it wrote)
    ...
    === end ID | rc=RC | seconds=S | status=STATUS
summary.txt starts with "key: value" lines (the environment), up to "---- stages".
Everything here is stdlib only and never raises on malformed input: what cannot
be read comes back as None or empty, and the report says so.
"""
import json
import re
import statistics

BEGIN = re.compile(r"^=== begin (\S+) \| [^|]* \| (.*)$")
END = re.compile(r"^=== end (\S+) \| rc=(\d*) \| seconds=([\d.]+) \| status=(.*)$")
JSON = re.compile(r"^=== json (\S+)$")


class Block:
    def __init__(self, ident, command):
        self.id, self.command = ident, command
        self.rc, self.seconds, self.status = None, None, "incomplete (no end line)"
        self.text, self.json_text = [], None

    @property
    def ok(self):
        return self.status == "ok"

    @property
    def ran(self):
        return not self.status.startswith("skipped")

    def output(self):
        return "\n".join(self.text)

    def json(self):
        """The block's json part as one document, or None."""
        try:
            return json.loads(self.json_text) if self.json_text else None
        except ValueError:
            return None

    def json_lines(self):
        """The block's json part as JSON lines (unparsable lines dropped)."""
        events = []
        for line in (self.json_text or "").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
        return events


def read_blocks(path):
    """{id: Block} for one log; a later block with the same id wins."""
    blocks, cur, in_json = {}, None, False
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return blocks
    for line in lines:
        m = BEGIN.match(line)
        if m:
            cur, in_json = Block(m.group(1), m.group(2)), False
            blocks[cur.id] = cur
            continue
        if cur is None:
            continue
        m = END.match(line)
        if m and m.group(1) == cur.id:
            cur.rc = int(m.group(2)) if m.group(2) else None
            cur.seconds, cur.status = float(m.group(3)), m.group(4)
            cur = None
            continue
        m = JSON.match(line)
        if m and m.group(1) == cur.id:
            in_json, cur.json_text = True, ""
            continue
        if in_json:
            cur.json_text += line + "\n"
        else:
            cur.text.append(line)
    return blocks


def read_header(path):
    """The "key: value" lines at the top of summary.txt."""
    header = {}
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return header
    for line in lines:
        if line.startswith("---- stages"):
            break
        m = re.match(r"^([a-z_]+): ?(.*)$", line)
        if m and m.group(1) not in header:
            header[m.group(1)] = m.group(2).strip()
    return header


# ---- GoogleTest ---------------------------------------------------------------------------------
RUN = re.compile(r"^\[ RUN      \] (\S+)")
# Per-test outcome lines; value-parameterized failures add ", where GetParam() = ...".
DONE = re.compile(r"^\[ +(OK|FAILED|SKIPPED) +\] ([^\s,]+)(?:, where .*)? \(\d+ ms\)\s*$")


def gtest(text):
    """Counts from the per-test lines (robust to a crash, unlike the footer).
    A test that started but never finished (crash, timeout) counts as failed."""
    res = {"passed": 0, "failed": 0, "skipped": 0, "failed_names": [], "skipped_names": {},
           "unfinished": None, "info": []}
    running, last_skip_reason, lines = None, "", text.splitlines()
    for i, line in enumerate(lines):
        m = RUN.match(line)
        if m:
            running, last_skip_reason = m.group(1), ""
            continue
        if line.rstrip().endswith(": Skipped") and i + 1 < len(lines):
            last_skip_reason = lines[i + 1].strip()
        if line.startswith("[ info ]"):
            res["info"].append(line[len("[ info ] "):].strip())
        m = DONE.match(line)
        if m and m.group(2) == running:
            kind, running = m.group(1), None
            if kind == "OK":
                res["passed"] += 1
            elif kind == "FAILED":
                res["failed"] += 1
                res["failed_names"].append(m.group(2))
            else:
                res["skipped"] += 1
                res["skipped_names"][m.group(2)] = last_skip_reason
    if running:
        res["failed"] += 1
        res["failed_names"].append(running + " (never finished)")
        res["unfinished"] = running
    return res


# ---- compute-sanitizer ----------------------------------------------------------------------------
ERROR_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) errors?")
RACE_SUMMARY = re.compile(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)")
FINDING = re.compile(r"^========= (Invalid |Uninitialized |Race reported|Barrier error|"
                     r"Warning|Error|Program hit|Malloc/Free|Out-of-range|Cuda API error)")
AT = re.compile(r"^=========\s+at (.+)$")
UNSUPPORTED = re.compile(r"(Device not supported|not supported on this|Error: Target application "
                         r"terminated before first instrumented API call|Unable to )", re.I)


def sanitizer(text, tool):
    """{errors, warnings, complete, kernels, note}: memcheck, synccheck and
    initcheck end with "ERROR SUMMARY: N errors"; racecheck with "RACECHECK
    SUMMARY: H hazards displayed (E errors, W warnings)". Without a summary (a
    timeout, an unsupported device) errors is None: nothing can be claimed."""
    res = {"errors": None, "warnings": 0, "complete": False, "kernels": [], "note": ""}
    lines = text.splitlines()
    if tool == "racecheck":
        sums = [RACE_SUMMARY.search(l) for l in lines]
        sums = [m for m in sums if m]
        if sums:
            res.update(errors=sum(int(m.group(2)) for m in sums),
                       warnings=sum(int(m.group(3)) for m in sums), complete=True)
    else:
        sums = [m for m in (ERROR_SUMMARY.search(l) for l in lines) if m]
        if sums:
            res.update(errors=sum(int(m.group(1)) for m in sums), complete=True)
    seen, findings = [], 0
    for i, line in enumerate(lines):
        if FINDING.match(line):
            findings += 1
            for nxt in lines[i + 1:i + 8]:
                m = AT.match(nxt)
                if m:
                    where = m.group(1).strip()[:100]
                    if where not in seen:
                        seen.append(where)
                    break
    res["kernels"] = seen[:8]
    if not res["complete"]:
        m = next((UNSUPPORTED.search(l) for l in lines if UNSUPPORTED.search(l)), None)
        res["note"] = ("not supported here: " + m.group(1)) if m else \
            "no summary line (stopped early)"
        if findings:
            res["note"] += "; %d finding(s) printed before it stopped" % findings
    return res


# ---- training and benchmarks ----------------------------------------------------------------------------
def train(block):
    """From a train block's JSON lines: accuracy, epochs, median epoch ms
    (epochs 2.. when there are several: the first pays for start-up), graph use,
    warnings. None when it logged no epoch."""
    if block is None:
        return None
    ev = block.json_lines()
    epochs = [e for e in ev if e.get("event") == "epoch"]
    if not epochs:
        return None
    start = next((e for e in ev if e.get("event") == "start"), {})
    summ = next((e for e in ev if e.get("event") == "summary"), {})
    steady = [e["seconds"] for e in epochs[1:]] or [e["seconds"] for e in epochs]
    steps = epochs[-1].get("steps") or start.get("steps_per_epoch") or 0
    ms = statistics.median(steady) * 1e3
    return {"accuracy": summ.get("test_accuracy", epochs[-1].get("test_accuracy")),
            "epochs": len(epochs), "epoch_ms": ms, "step_us": ms * 1e3 / steps if steps else None,
            "graph": start.get("graph"), "backend": start.get("backend", ""),
            "warnings": [e.get("message", "") for e in ev if e.get("event") == "warning"],
            "complete": bool(summ) and block.ok}


def bench_row(block, device, batch=100):
    """(epoch_ms, step_us, row) of `device` at `batch` in a bench --json block."""
    doc = block.json() if block else None
    for r in (doc or {}).get("results", []):
        if r.get("device") == device and r.get("batch_size") == batch:
            return r["epoch_seconds"] * 1e3, r["step_ms"] * 1e3, r
    return None, None, None


def kernels(block):
    """The CUDA batch-100 report of a bench --kernels --json block: every node's
    name, lane, us, achieved ("123.4 GB/s" or "56.7 GFLOP/s"), of_peak and
    whether it is on the critical path; None when the block has none."""
    doc = block.json() if block else None
    for r in (doc or {}).get("kernels", []):
        if r.get("device") != "cuda":
            continue
        nodes = []
        for n in r.get("nodes", []):
            gemm = n.get("kind") == "gemm"
            value = n.get("gflops" if gemm else "gbps")
            nodes.append({"name": n.get("name"), "lane": n.get("lane", 0), "us": n.get("us"),
                          "achieved": None if value is None else
                          "%.1f %s" % (value, "GFLOP/s" if gemm else "GB/s"),
                          "of_peak": n.get("of_peak") or None, "critical": bool(n.get("critical"))})
        return {"batch_size": r.get("batch_size"), "tf32": r.get("tf32"), "nodes": nodes,
                "sum_us": r.get("sum_us"), "critical_path_us": r.get("critical_path_us"),
                "critical_path_nodes": r.get("critical_path_nodes"), "step_us": r.get("step_us")}
    return None
