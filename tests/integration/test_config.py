"""`voxbridge -t`: checking a config file the way an operator does before a
reload. Run by run.py (no server process needed)."""

import os
import subprocess
import tempfile
import unittest

import harness


class ConfigCheck(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vb-integ-conf-")
        self.addCleanup(lambda: subprocess.call(["rm", "-rf", self.dir]))
        if not os.access(harness.voxbridge_bin(), os.X_OK):
            self.fail("no server binary at %s" % harness.voxbridge_bin())

    def check(self, text):
        path = os.path.join(self.dir, "v.conf")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([harness.voxbridge_bin(), "-t", "-c", path], capture_output=True,
                           text=True, timeout=20)
        return path, p

    def good_text(self):
        return harness.config_text(harness.default_settings(18080, 18081, self.dir))

    def test_good_file_exits_0(self):
        path, p = self.check(self.good_text())
        self.assertEqual(p.returncode, 0, "voxbridge -t on a good file: %s %s" % (p.stdout,
                                                                                p.stderr))

    def test_shipped_config_is_valid(self):
        shipped = os.path.join(harness.srcdir(), "conf", "voxbridge.conf")
        p = subprocess.run([harness.voxbridge_bin(), "-t", "-c", shipped], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(p.returncode, 0, "%s: %s %s" % (shipped, p.stdout, p.stderr))

    def test_unknown_key_exits_2_naming_file_line_key(self):
        text = self.good_text()
        lineno = text.count("\n") + 2  # a comment line, then the bad key
        path, p = self.check(text + "# a typo follows\nworkerz = 4\n")
        self.assertEqual(p.returncode, 2, "stdout %r stderr %r" % (p.stdout, p.stderr))
        want = "%s:%d: key 'workerz'" % (path, lineno)
        self.assertIn(want, p.stderr)

    def test_bad_value_exits_2(self):
        path, p = self.check(self.good_text() + "workers_max = lots\n")
        self.assertEqual(p.returncode, 2)
        self.assertIn("key 'workers_max'", p.stderr)

    def test_turn_taking_settings_of_an_assistant(self):
        ok = ("assistant.tt.mode = local\nassistant.tt.barge_in_ms = 120\n"
              "assistant.tt.end_silence_ms = 800\n")
        path, p = self.check(self.good_text() + ok)
        self.assertEqual(p.returncode, 0, p.stderr)
        for key, bad in (("barge_in_ms", "40"), ("end_silence_ms", "100"),
                         ("end_silence_ms", "9000")):
            path, p = self.check(self.good_text() + "assistant.tt.%s = %s\n" % (key, bad))
            self.assertEqual(p.returncode, 2, "%s = %s accepted" % (key, bad))
            self.assertIn("key 'assistant.tt.%s'" % key, p.stderr)
            self.assertIn("expected a whole number from", p.stderr)

    def test_missing_file_exits_2(self):
        p = subprocess.run([harness.voxbridge_bin(), "-t", "-c",
                            os.path.join(self.dir, "nope.conf")], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(p.returncode, 2)
        self.assertIn("nope.conf", p.stderr)


if __name__ == "__main__":
    unittest.main()
