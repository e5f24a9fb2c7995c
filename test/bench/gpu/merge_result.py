#!/usr/bin/env python3
"""Merges one stage of the device check into result.json (stdlib only).

Each stage calls this as it finishes, so result.json is always valid JSON holding every stage
that ended before a timeout. The file is replaced atomically (write to a temporary, rename).

  merge_result.py RESULT --init KEY=VALUE...                 start a result (top-level fields)
  merge_result.py RESULT --stage NAME --status S [--seconds X] [--timeout T]
                  [--json FILE] [--jsonl FILE] [--tests FILE] [--log FILE] [--set KEY=VALUE]...

--json adds the object in FILE as the stage's "data"; --jsonl adds every JSON line of FILE as
"rows" (lines that do not parse are kept as text under "unparsed"); --tests parses the core test
runner's "ok  /FAIL/skip NAME" lines into counts and failures; --log keeps the last 40 lines.
"""
import json
import os
import sys
import time


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"schema": 1, "stages": {}, "order": []}


def save(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def parse_value(v):
    try:
        return json.loads(v)
    except ValueError:
        return v


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def jsonl_rows(path):
    text = read_text(path)
    rows, bad = [], []
    if text is None:
        return rows, bad
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            bad.append(line[:500])
    return rows, bad


def test_summary(path):
    text = read_text(path)
    if text is None:
        return None
    lines = text.splitlines()
    counts = {"ok": 0, "FAIL": 0, "skip": 0}
    failures, skips = [], []
    for i, line in enumerate(lines):
        for tag in ("ok  ", "FAIL", "skip"):
            if line.startswith(tag + " "):
                name = line[len(tag) + 1:]
                counts[tag.strip()] += 1
                detail = lines[i + 1].strip() if i + 1 < len(lines) else ""
                if tag == "FAIL":
                    failures.append({"name": name, "detail": detail[:500]})
                elif tag == "skip":
                    skips.append({"name": name, "reason": detail[:200]})
    return {"passed": counts["ok"], "failed": counts["FAIL"], "skipped": counts["skip"],
            "failures": failures, "skips": skips[:50], "last": lines[-1] if lines else ""}


def fmt_row(r):
    if "check" in r or "cell" in r:
        what = r.get("check") if "check" in r else f"notebook cell {r['cell']}"
        err = (str(r.get("error", "")).splitlines() or [""])[0][:160]
        tail = "" if r.get("ok") or not err else ": " + err
        return f"  {what}: {'ok' if r.get('ok') else 'FAIL'}{tail}"
    if "quant" in r and "status" in r and "engine" not in r:  # a seed run (ghost-seed.mjs)
        if r.get("status") != "ok":
            return f"  seed {r['quant']}: {r.get('status')}: {(str(r.get('error', '')).splitlines() or [''])[0][:160]}"
        return (f"  seed {r['quant']}: {r.get('steps')} steps, {r.get('tokensPerSec') or 0:,.0f} tok/s, loss {r.get('finalLoss')}, "
                f"WikiText-2 ppl valid {r.get('wikitextValidPpl')} test {r.get('wikitextTestPpl')}")
    if "error" in r or "skipped" in r:
        return f"  {r.get('label') or r.get('args') or r.get('probe') or r.get('engine')}: {r.get('error') or r.get('skipped')}"
    if r.get("engine") == "primal":
        prof = r.get("profile") or {}
        extra = (f" busy {prof.get('busyMsPerStep', 0):.1f} ms/step, syncs {prof.get('hostSyncsPerStep', 0):.0f}/step"
                 if prof else "")
        return (f"  primal {r.get('label', r.get('quant'))}: {r.get('tokensPerSec', 0):,.0f} tok/s, "
                f"{r.get('stepMs', 0):.1f} ms/step, MFU {100 * r.get('mfu', 0):.1f}%, "
                f"peak {r.get('peakMemoryBytes', 0) / 2**30:.2f} GiB [{r.get('gemm')}/{r.get('attention')}]{extra}")
    if r.get("engine") == "pytorch":
        return f"  pytorch {r.get('quant')} {'compile' if r.get('compile') else 'eager'}: {r.get('tokensPerSec', 0):,.0f} tok/s, peak {r.get('peakMemoryBytes', 0) / 2**30:.2f} GiB"
    if r.get("probe") == "cublaslt":
        return f"  cublasLt {r.get('type')} {r.get('shape')}: {r.get('tflops')} T(FL)OP/s"
    return "  " + json.dumps(r)[:160]


def print_summary(res):
    print(f"commit {res.get('commit')} gpu {res.get('gpu')} deadline {res.get('deadlineS')} s")
    for name in res.get("order", []):
        st = res["stages"][name]
        print(f"{name}: {st.get('status')} ({st.get('seconds', 0)} s)")
        for log, t in (st.get("tests") or {}).items():
            print(f"  {log}: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped")
            for f in t["failures"][:10]:
                print(f"    FAIL {f['name']}: {f['detail'][:160]}")
        for r in st.get("rows", []):
            try:
                print(fmt_row(r))
            except Exception as e:  # noqa: BLE001 - the summary never stops the check
                print(f"  (row not shown: {e!r})")


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, args = argv[1], argv[2:]
    res = load(path)
    if args and args[0] == "--summary":
        print_summary(res)
        return 0
    if args and args[0] == "--init":
        res = {"schema": 1, "stages": {}, "order": []}
        for kv in args[1:]:
            k, _, v = kv.partition("=")
            res[k] = parse_value(v)
        save(path, res)
        return 0
    stage = {}
    name = None
    i = 0
    while i < len(args):
        k = args[i]
        v = args[i + 1] if i + 1 < len(args) else ""
        i += 2
        if k == "--stage":
            name = v
        elif k == "--status":
            stage["status"] = v
        elif k == "--seconds":
            stage["seconds"] = round(float(v), 2)
        elif k == "--timeout":
            stage["timeoutS"] = int(float(v))
        elif k == "--json":
            text = read_text(v)
            if text is not None:
                try:
                    stage.setdefault("data", {}).update(json.loads(text))
                except ValueError as e:
                    stage["dataError"] = f"{v}: {e}"
        elif k == "--jsonl":
            rows, bad = jsonl_rows(v)
            stage.setdefault("rows", []).extend(rows)
            if bad:
                stage.setdefault("unparsed", []).extend(bad)
        elif k == "--tests":
            summary = test_summary(v)
            if summary is not None:
                stage.setdefault("tests", {})[os.path.basename(v)] = summary
        elif k == "--log":
            text = read_text(v)
            if text is not None:
                stage.setdefault("logTail", {})[os.path.basename(v)] = text.splitlines()[-40:]
        elif k == "--set":
            kk, _, vv = v.partition("=")
            stage[kk] = parse_value(vv)
        else:
            print(f"merge_result: unknown option {k}", file=sys.stderr)
            return 2
    if not name:
        print("merge_result: --stage NAME is required", file=sys.stderr)
        return 2
    res.setdefault("stages", {})[name] = stage
    order = res.setdefault("order", [])
    if name not in order:
        order.append(name)
    res["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save(path, res)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
