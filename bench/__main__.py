"""`python -m bench [name ...]`: run the benchmarks and rewrite their sections of docs/benchmarks.md."""

from __future__ import annotations

import sys

import anyio

from bench import fairness, load, oauth, overhead, rate_models, report, scheduling, sealing, shared, store_work

BENCHES = {
    "scheduling": scheduling.run,
    "load": load.run,
    "overhead": overhead.run,
    "metrics": overhead.run_metrics,
    "audit": overhead.run_audit,
    "fast": overhead.run_fast,
    "shared": shared.run,
    "rate_models": rate_models.run,
    "oauth": oauth.run,
    "sealing": sealing.run,
    "store_work": store_work.run,
    "fairness": fairness.run,
}


def main() -> None:
    names = sys.argv[1:] or list(BENCHES)
    for name in names:
        section = anyio.run(BENCHES[name])
        report.write_section(name, section)
        print(section)


if __name__ == "__main__":
    main()
