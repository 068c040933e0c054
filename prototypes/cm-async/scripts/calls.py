#!/usr/bin/env python3
"""Calls per acquire of a few functions, from two callgrind outputs (lo, hi) and their N.
Usage: calls.py LO.out NLO HI.out NHI [substring...]"""
import re, sys
def counts(path, subs):
    names, tot, cfn = {}, {s: 0 for s in subs}, None
    for line in open(path, errors="replace"):
        m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
        if m:
            if m.group(2): names[m.group(1)] = m.group(2)
            if line.startswith("cfn="): cfn = names.get(m.group(1), "")
            continue
        m = re.match(r"calls=(\d+)", line)
        if m and cfn is not None:
            for s in subs:
                if s in cfn: tot[s] += int(m.group(1))
            cfn = None
    return tot
lo, nlo, hi, nhi, *subs = sys.argv[1:]
subs = subs or ["malloc", "wasmtime_fiber_switch", "resume_fiber"]
a, b = counts(lo, subs), counts(hi, subs)
for s in subs:
    print(f"{s:40s} {(b[s]-a[s])/(int(nhi)-int(nlo)):8.2f} calls/acquire")
