"""Runs every test_* function of tests/integration/test_*.py.

Each test function takes a fresh harness.Env (see harness.py).  Prints a
line per test and a closing "integration: N passed, N failed" line.
Usage: run.py [substring ...]  to run only tests whose names match.
"""
import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402


def main():
    wanted = sys.argv[1:]
    passed = failed = 0
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(fn[:-3], os.path.join(HERE, fn))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            full = "%s.%s" % (fn[:-3], name)
            if wanted and not any(w in full for w in wanted):
                continue
            env = None
            t0 = time.monotonic()
            try:
                env = harness.Env(name[5:20])
                getattr(mod, name)(env)
                passed += 1
                print("ok   %s (%.1f s)" % (full, time.monotonic() - t0), flush=True)
            except Exception as e:      # noqa: BLE001 - report every failure
                failed += 1
                print("FAIL %s: %s" % (full, e), flush=True)
                if not isinstance(e, harness.TestFailure):
                    traceback.print_exc(file=sys.stdout)
                if env is not None:
                    print("---- daemon log (tail) ----\n%s" % env.log_text()[-4000:])
            finally:
                if env is not None:
                    env.close()
    print("integration: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
