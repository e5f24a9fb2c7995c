"""Drive a Jupyter kernel with jupyter_client, for the PRIMAL kernel tests.

Usage: python3 kernel_client.py SCRIPT.json
SCRIPT: {"kernel": "primal", "cwd": "...", "startup_timeout": 60,
         "cells": [{"code": "...", "timeout": 120, "delay": 0.5, "interrupt_after": 3.0,
                    "interrupt_when": "text that must appear in an output first"}]}
Prints one JSON object: {"cells": [{"status", "seconds", "interrupted_at", "outputs": [...]}]}
where outputs are the iopub messages of the cell (stream, display_data, update_display_data,
execute_result, error) with their content.
"""
import json
import sys
import time

from jupyter_client.manager import KernelManager


def run_cell(kc, km, cell):
    if cell.get("delay"):
        time.sleep(float(cell["delay"]))
    code = cell["code"]
    timeout = float(cell.get("timeout", 120))
    interrupt_after = cell.get("interrupt_after")
    interrupt_when = cell.get("interrupt_when")
    msg_id = kc.execute(code, store_history=True)
    t0 = time.time()
    outputs = []
    interrupted_at = None
    idle = False
    reply = None
    while True:
        elapsed = time.time() - t0
        if elapsed > timeout:
            return {"status": "timeout", "seconds": elapsed, "interrupted_at": interrupted_at, "outputs": outputs}
        if interrupt_after is not None and interrupted_at is None and elapsed >= float(interrupt_after):
            seen = interrupt_when is None or any(interrupt_when in json.dumps(o) for o in outputs)
            if seen:
                km.interrupt_kernel()
                interrupted_at = elapsed
        try:
            msg = kc.get_iopub_msg(timeout=0.1)
        except Exception:  # queue.Empty
            msg = None
        if msg is not None and msg.get("parent_header", {}).get("msg_id") == msg_id:
            kind = msg["header"]["msg_type"]
            if kind == "status" and msg["content"].get("execution_state") == "idle":
                idle = True
            elif kind in ("stream", "display_data", "update_display_data", "execute_result", "error"):
                outputs.append({"type": kind, "t": time.time() - t0, "content": msg["content"]})
        if idle and reply is None:
            deadline = time.time() + 10
            while reply is None and time.time() < deadline:
                try:
                    m = kc.get_shell_msg(timeout=1)
                except Exception:
                    continue
                if m.get("parent_header", {}).get("msg_id") == msg_id:
                    reply = m
            if reply is None:
                reply = {"content": {"status": "no-reply"}}
        if idle and reply is not None:
            return {
                "status": reply["content"].get("status"),
                "seconds": time.time() - t0,
                "interrupted_at": interrupted_at,
                "outputs": outputs,
            }


def main():
    with open(sys.argv[1]) as f:
        script = json.load(f)
    km = KernelManager(kernel_name=script.get("kernel", "primal"))
    km.start_kernel(cwd=script.get("cwd"))
    kc = km.client()
    kc.start_channels()
    results = []
    try:
        kc.wait_for_ready(timeout=float(script.get("startup_timeout", 60)))
        for cell in script["cells"]:
            results.append(run_cell(kc, km, cell))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    json.dump({"cells": results}, sys.stdout)


if __name__ == "__main__":
    main()
