"""Runs the integration tests (tests/integration/test_*.py) one by one, prints
each one's result as it finishes and ends with the line "N passed, N failed".
Exit status 0 only when nothing failed. Arguments: substrings of test ids to
run (default: all). Started by run.sh, which sets VB_BUILDDIR."""

import os
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (after the path is set)

TEST_TIMEOUT_S = int(os.environ.get("VB_TEST_TIMEOUT", "180"))


class TestTimeout(Exception):
    pass


def on_alarm(signum, frame):
    raise TestTimeout("test still running after %d s (VB_TEST_TIMEOUT)" % TEST_TIMEOUT_S)


class Result(unittest.TextTestResult):
    def startTest(self, test):
        self.t0 = time.monotonic()
        signal.alarm(TEST_TIMEOUT_S)
        super().startTest(test)

    def stopTest(self, test):
        signal.alarm(0)
        super().stopTest(test)

    def _line(self, word, test):
        self.stream.write("%-5s %s (%.1f s)\n" % (word, test.id(), time.monotonic() - self.t0))
        self.stream.flush()

    def addSuccess(self, test):
        unittest.TestResult.addSuccess(self, test)
        self._line("PASS", test)

    def addFailure(self, test, err):
        unittest.TestResult.addFailure(self, test, err)
        self._line("FAIL", test)

    def addError(self, test, err):
        unittest.TestResult.addError(self, test, err)
        self._line("ERROR", test)

    def addSkip(self, test, reason):
        unittest.TestResult.addSkip(self, test, reason)
        self._line("SKIP", test)
        self.stream.write("      %s\n" % reason)

    def addExpectedFailure(self, test, err):
        unittest.TestResult.addExpectedFailure(self, test, err)
        self._line("XFAIL", test)

    def addUnexpectedSuccess(self, test):
        unittest.TestResult.addUnexpectedSuccess(self, test)
        self._line("XPASS", test)


def flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from flatten(t)
        else:
            yield t


def sweep_orphans():
    """Safety net: anything of the server's re-parented to us is killed and reaped."""
    table = harness.proc_table()
    me = os.getpid()
    for pid, (ppid, state, title) in table.items():
        if ppid == me and title.startswith("voxbridge"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break


def main(argv):
    signal.signal(signal.SIGALRM, on_alarm)
    loader = unittest.TestLoader()
    suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    tests = list(flatten(suite))
    broken = [t for t in tests if t.__class__.__name__ == "_FailedTest"]
    if argv:
        tests = [t for t in tests if any(a in t.id() for a in argv) or t in broken]
    print("voxbridge integration tests: %d tests, server %s" % (len(tests),
                                                              harness.voxbridge_bin()))
    if harness.running_as_root():
        print("running as root (servers run as root too until start_postgres() needs a user)")
    sys.stdout.flush()
    result = Result(sys.stdout, descriptions=False, verbosity=0)
    t0 = time.monotonic()
    try:
        for t in tests:
            t(result)
    finally:
        sweep_orphans()
    if result.failures or result.errors:
        print("\n==================== details ====================")
        for test, tb in result.failures + result.errors:
            print("---- %s\n%s" % (test.id(), tb))
    passed = result.testsRun - len(result.failures) - len(result.errors) - len(result.skipped)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    if result.skipped:
        print("%d skipped" % len(result.skipped))
    print("total time %.0f s" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
