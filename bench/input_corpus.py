"""Public-file corpus: every reader outcome classified against what the file really is (issue 13).

Builds the corpus from the installed pydicom, pydicom-data and nibabel packages plus truncated copies
(tests/inputs/corpus.py says how), reads each file, and prints the counts: files, reads, crashes,
misleading and unclassified messages, warnings that escaped to the console, and errors by rule.

    python bench/input_corpus.py [-v]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.inputs import corpus  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="print every outcome")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aris-corpus-") as tmp:
        files = corpus.public_files()
        cut = corpus.truncated_copies(files, Path(tmp))
        t0 = time.perf_counter()
        outcomes = list(corpus.run(files + cut, {p for _, p in cut}))
        elapsed = time.perf_counter() - t0
    s = corpus.summary(outcomes)
    if a.verbose:
        for o in outcomes:
            print(f"{o.verdict:40} {o.kind:5} {o.path.name}: {o.error_type} {o.message[:160]}")
    print(f"corpus: {s['files']} files ({', '.join(f'{n} {k}' for k, n in s['by_source'].most_common())})")
    print(f"reads: {s['reads']} in {elapsed:.1f} s; {s['ok']} read, {s['errors']} refused with a message")
    print("errors by rule: " + ", ".join(f"{k} {n}" for k, n in s["by_rule"].most_common()))
    for name in ("crashes", "misleading", "unclassified", "escaped_warnings"):
        print(f"{name}: {len(s[name])}")
        for o in s[name][:20]:
            print(f"  {o.kind} {o.path}: {o.verdict}: {o.message[:200]} {o.escaped_warnings[:1]}")
    bad = sum(len(s[k]) for k in ("crashes", "misleading", "unclassified", "escaped_warnings"))
    print(f"VERDICT: {'PASS' if not bad else 'FAIL'}")
    return 0 if not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())
