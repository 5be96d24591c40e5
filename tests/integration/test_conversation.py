"""Spoken conversations with the offline `local` assistant, end to end: a
private PostgreSQL and Redis (services.py, shared with test_records), an
assistant with the demo intents seeded in PostgreSQL, the real voxbridge, and
voxbridge-callsim speaking the caller's lines with espeak-ng (--say) and waiting
for each answer like a person. The acceptance list of the issue "First words":

- a call is answered: the caller hears the first message, each line is
  recognised well enough to match its intent and is answered, the last one
  (goodbye) ends the call; the call row is completed and both sides' turns are
  in PostgreSQL in order with their times;
- kill -9 of the media worker mid-call: that call's row is failed with the
  turns spoken so far, the other call goes on to its end;
- kill -9 of the broker mid-call: the respawned broker carries on from the
  slot's transcript (the next line is answered, the first message is not said
  again);
- an assistant edited in PostgreSQL is used by the next call, no restart.

The local voice runs in real time: each call lasts as long as its
conversation (about 10 to 20 s). Run by run.py."""

import json
import os
import signal

import harness
import test_records

NUMBER = "+15550000042"
FIRST = "Hello, thanks for calling the salon. How can I help?"
SHORT_FIRST = "Hello, how can I help?"
FALLBACK = "Sorry, I did not catch that. Could you say it another way?"
# caller line -> the intent it must match
SCRIPT = [("what are your opening hours", "hours"),
          ("where are you located", "location"),
          ("goodbye", "goodbye")]


def demo_intents():
    with open(os.path.join(harness.srcdir(), "tests", "data", "demo_intents.json")) as f:
        return json.load(f)


def reply_of(intent):
    return next(i["reply"] for i in demo_intents() if i["name"] == intent)


def sql_str(text):
    return "'" + text.replace("'", "''") + "'"


def say_args(lines):
    args = []
    for text in lines:
        args += ["--say", text]
    return args


class Conversation(test_records.DatabaseTestCase):
    """Each test: its own database (a copy of the migrated template), a `local`
    assistant answering NUMBER, and a server reading both from PostgreSQL."""

    def seed(self, first=FIRST, name="salon"):
        intents = json.dumps(demo_intents())
        return self.value(
            "WITH a AS (INSERT INTO assistants (organization_id, name, mode, first_message,"
            " fallback, intents) VALUES (vb_default_org(), %s, 'local', %s, %s, %s::jsonb)"
            " RETURNING id, organization_id)"
            " INSERT INTO phone_numbers (organization_id, number, assistant_id)"
            " SELECT organization_id, %s, id FROM a RETURNING assistant_id"
            % (sql_str(name), sql_str(first), sql_str(FALLBACK), sql_str(intents),
               sql_str(NUMBER)))

    def call(self, s, lines, background=False, timeout=90, extra=()):
        args = say_args(lines) + ["--wait-ms", 6000] + list(extra)
        return s.callsim(*args, background=background, timeout=timeout, to=NUMBER)

    def turns(self, call_id):
        """[(seq, speaker, text, intent, start_ms, end_ms, v2v_ms, interrupted)]"""
        rows = self.sql(
            "SELECT seq, speaker, text, intent, start_ms, end_ms, v2v_ms, interrupted"
            " FROM transcript_turns WHERE call_id = '%s' ORDER BY seq" % call_id)
        return [(int(r[0]), r[1], r[2], r[3], None if r[4] is None else int(r[4]),
                 None if r[5] is None else int(r[5]), None if r[6] is None else int(r[6]),
                 r[7] == "t") for r in rows]

    def cut_replies(self, call_id):
        """{seq: (planned_text, broker_restarted)} of the call's interrupted turns."""
        rows = self.sql(
            "SELECT seq, planned_text, broker_restarted FROM transcript_turns"
            " WHERE call_id = '%s' AND interrupted ORDER BY seq" % call_id)
        return {int(r[0]): (r[1], r[2] == "t") for r in rows}

    def wait_ended(self, call_ids, timeout=15):
        ids = ",".join("'%s'" % c for c in call_ids)
        self.wait_rows("SELECT count(*) FROM calls WHERE id IN (%s) AND ended_at IS NOT NULL"
                       % ids, len(call_ids), timeout=timeout,
                       what="the end of calls %s in PostgreSQL" % ids)

    def wait_caller_turns(self, n, calls=1, timeout=30):
        """Until CALLS calls each have at least N caller turns in PostgreSQL."""
        return self.wait_rows(
            "SELECT count(*) FROM (SELECT call_id FROM transcript_turns WHERE speaker ="
            " 'caller' GROUP BY call_id HAVING count(*) >= %d) x" % n, calls, timeout=timeout,
            what="%d call(s) with %d caller turn(s) in PostgreSQL" % (calls, n))

    def check_conversation(self, res, pc, turns, first, script):
        """The whole conversation, as the caller heard it and as PostgreSQL has it."""
        where = "call %s" % pc.get("call_id")
        self.assertCallsim(res, pc["result"] == "answered" and pc["close_code"] == 1000,
                           "%s: %s, closed %s %s" % (where, pc["result"], pc["close_code"],
                                                     pc["close_reason"]))
        self.assertCallsim(res, pc["agent_hung_up"], "%s: the agent did not hang up" % where)
        self.assertCallsim(res, len(pc["turns"]) == len(script),
                           "%s: %d of %d lines spoken" % (where, len(pc["turns"]), len(script)))
        self.assertCallsim(res, pc["unanswered_turns"] == 0, "%s: unanswered lines" % where)
        for t in pc["turns"]:
            self.assertCallsim(res, t["reply_ms"] is not None and 0 <= t["reply_ms"] < 4000,
                               "%s: reply time of %r: %s" % (where, t["text"], t["reply_ms"]))
        # the caller heard the first message before speaking: about a second of audio
        # per short sentence reached it before its first line
        self.assertCallsim(res, pc["greeting_ms"] is not None and pc["greeting_ms"] >= 800,
                           "%s: heard %s ms of greeting" % (where, pc["greeting_ms"]))
        # PostgreSQL: agent (first message), then caller/agent for each line, in order
        want = [("agent", first, None)]
        for text, intent in script:
            want += [("caller", None, intent), ("agent", reply_of(intent), intent)]
        got = [(t[1], t[2] if t[1] == "agent" else None, t[3]) for t in turns]
        self.assertEqual(got, want, "turns in PostgreSQL:\n%s" % "\n".join(map(str, turns)))
        self.assertEqual([t[0] for t in turns], list(range(1, len(want) + 1)))
        for seq, speaker, text, intent, start, end, v2v, interrupted in turns:
            self.assertIsNotNone(start, "turn %d has no start_ms" % seq)
            self.assertGreaterEqual(end, start, "turn %d ends before it starts" % seq)
            self.assertFalse(interrupted, "turn %d was interrupted: %r" % (seq, text))
            if speaker == "caller":
                self.assertTrue(v2v is not None and 0 < v2v < 4000,
                                "turn %d: v2v_ms %s" % (seq, v2v))
        starts = [t[4] for t in turns]
        self.assertEqual(starts, sorted(starts), "turn start times out of order")
        # both sides' clocks agree on when the caller spoke (the server's VAD may take
        # a little more or less than callsim's energy threshold)
        callers = [t for t in turns if t[1] == "caller"]
        for heard, said in zip(callers, pc["turns"]):
            self.assertLess(abs(heard[4] - said["start_ms"]), 400,
                            "caller turn %d at %s ms, callsim spoke at %s ms" % (
                                heard[0], heard[4], said["start_ms"]))

    # ------------------------------------------------------------------ tests

    def test_call_is_answered_and_recorded(self):
        self.seed()
        s = self.db_server()
        res = self.call(s, [t for t, _ in SCRIPT])
        self.assertCallsim(res, res.rc == 0, "callsim exit %s" % res.rc)
        self.assertEqual(res["agent_hangups"], 1)
        (pc,) = res.per_call()
        self.wait_ended([pc["call_id"]])
        row = self.sql("SELECT status, failed, end_reason, assistant_name, to_number,"
                       " duration_ms FROM calls WHERE id = '%s'" % pc["call_id"])[0]
        self.assertEqual(row[:2], ["completed", "f"])
        self.assertEqual(row[3:5], ["salon", NUMBER])
        self.assertTrue(5000 < int(row[5]) < 60000, "duration_ms %s" % row[5])
        self.check_conversation(res, pc, self.turns(pc["call_id"]), FIRST, SCRIPT)
        # the call was ended by the goodbye intent, and says so
        self.assertEqual(row[2], "assistant ended the call", "end_reason of the call")

    def test_kill_9_of_a_media_worker_fails_its_call_only(self):
        self.seed(first=SHORT_FIRST)
        s = self.db_server(workers=3, workers_min_spare=1)
        run = self.call(s, [t for t, _ in SCRIPT], background=True,
                        extra=["--calls", 2, "--ramp-ms", 700])
        # both calls have had their first line recognised: kill one of their workers
        self.wait_caller_turns(1, calls=2)
        conns = s.media_connections()
        self.assertEqual(len(conns), 2, "two workers with a call each: %s" % conns)
        victim = sorted(conns)[0]
        os.kill(victim, signal.SIGKILL)
        res = run.wait(90)
        self.assertEqual(res["answered"], 2)
        by_close = {pc["close_code"]: pc for pc in res.per_call()}
        self.assertCallsim(res, sorted(by_close) == [1000, 1006],
                           "close codes %s" % sorted(by_close))
        dead, alive = by_close[1006], by_close[1000]
        self.wait_ended([dead["call_id"], alive["call_id"]])
        row = self.sql("SELECT status, failed, end_reason FROM calls WHERE id = '%s'"
                       % dead["call_id"])
        self.assertEqual(row, [["failed", "t", "media worker crashed"]])
        # the turns said before the crash are kept, in order
        turns = self.turns(dead["call_id"])
        self.assertGreaterEqual(len(turns), 2, turns)
        self.assertEqual(turns[0][1:3], ("agent", SHORT_FIRST))
        self.assertEqual(turns[1][1], "caller")
        self.assertEqual(turns[1][3], "hours")
        self.assertEqual([t[0] for t in turns], list(range(1, len(turns) + 1)))
        # the kill came once the answer to that line had started to play (its caller
        # turn is recorded when the answer's first audio leaves): what the caller heard
        # of it is a turn too, cut off
        self.assertEqual(len(turns), 3, "the answer in progress when the worker died is not "
                         "on record:\n%s" % "\n".join(map(str, turns)))
        seq, speaker, text, intent, start, end, v2v, interrupted = turns[2]
        self.assertEqual((speaker, intent, interrupted), ("agent", "hours", True), turns[2])
        self.assertTrue(reply_of("hours").startswith(text), turns[2])
        # what it meant to say is kept beside it; a worker's death is not a broker's
        self.assertEqual(self.cut_replies(dead["call_id"]).get(seq),
                         (reply_of("hours"), False), turns)
        # the other call went on to its goodbye
        self.assertEqual(self.value("SELECT status FROM calls WHERE id = '%s'"
                                    % alive["call_id"]), "completed")
        self.check_conversation(res, alive, self.turns(alive["call_id"]), SHORT_FIRST, SCRIPT)

    def test_without_the_open_model_the_intents_still_answer(self):
        """local_open_lm = 0: a broker of a tenth of the size, and the lines an
        intent covers are recognised and answered as before."""
        self.seed(first=SHORT_FIRST)
        s = self.db_server(extra={"local_open_lm": 0})
        res = self.call(s, ["what are your opening hours", "goodbye"])
        self.assertCallsim(res, res.rc == 0, "callsim exit %s" % res.rc)
        (pc,) = res.per_call()
        self.assertCallsim(res, pc["agent_hung_up"], "the agent did not end the call")
        self.wait_ended([pc["call_id"]])
        turns = self.turns(pc["call_id"])
        self.assertEqual([t[3] for t in turns if t[1] == "caller"], ["hours", "goodbye"], turns)
        self.assertIn(reply_of("hours"), [t[2] for t in turns if t[1] == "agent"])
        (broker,) = s.pids("broker")
        with open("/proc/%d/smaps_rollup" % broker) as f:
            pss = next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
        self.assertLess(pss, 60 * 1024, "broker PSS %d KiB: the open model was loaded" % pss)

    def test_kill_9_of_the_broker_carries_the_conversation_on(self):
        self.seed(first=SHORT_FIRST)
        s = self.db_server()
        run = self.call(s, [t for t, _ in SCRIPT], background=True)
        # the first line has been recognised and its answer is starting: kill the broker
        self.wait_caller_turns(1)
        (broker,) = s.pids("broker")
        os.kill(broker, signal.SIGKILL)
        harness.wait_until(lambda: s.pids("broker") and s.pids("broker") != [broker], 5,
                           what="a new broker")
        res = run.wait(90)
        self.assertCallsim(res, res.rc == 0, "callsim exit %s" % res.rc)
        (pc,) = res.per_call()
        self.assertCallsim(res, pc["agent_hung_up"], "the agent did not end the call")
        self.assertCallsim(res, len(pc["turns"]) == 3, "lines spoken: %s" % pc["turns"])
        for t in pc["turns"][1:]:
            self.assertCallsim(res, t["reply_ms"] is not None,
                               "%r was not answered after the broker restart" % t["text"])
        self.wait_ended([pc["call_id"]])
        self.assertEqual(self.value("SELECT status FROM calls WHERE id = '%s'"
                                    % pc["call_id"]), "completed")
        turns = self.turns(pc["call_id"])
        said = [(t[1], t[2]) for t in turns if t[1] == "agent"]
        self.assertEqual([t for t in said if t[1] == SHORT_FIRST], [("agent", SHORT_FIRST)],
                         "the first message, said once only:\n%s" % "\n".join(map(str, turns)))
        # after the restart: the next lines matched their intents and were answered
        intents = [t[3] for t in turns if t[1] == "caller"]
        self.assertEqual(intents, ["hours", "location", "goodbye"], turns)
        replies = [t[2] for t in turns if t[1] == "agent"]
        self.assertIn(reply_of("location"), replies)
        self.assertEqual(replies[-1], reply_of("goodbye"))
        self.assertEqual([t[0] for t in turns], list(range(1, len(turns) + 1)))
        # the answer the dead broker was speaking is on record, cut off (what the
        # caller heard of it died with that broker)
        cut = [t for t in turns if t[1] == "agent" and t[3] == "hours"]
        self.assertEqual(len(cut), 1, turns)
        self.assertTrue(cut[0][7], "the answer cut by the broker's death: %s" % (cut[0],))
        self.assertEqual(self.cut_replies(pc["call_id"]).get(cut[0][0]),
                         (reply_of("hours"), True), turns)

    def test_assistant_edited_in_postgres_is_used_by_the_next_call(self):
        aid = self.seed(first=SHORT_FIRST)
        s = self.db_server()
        res = self.call(s, ["goodbye"])
        self.assertCallsim(res, res.rc == 0, "first call")
        first_id = res.per_call()[0]["call_id"]
        first_greeting = res.per_call()[0]["greeting_ms"]
        changed = "Good morning, you are through to the new salon."
        rev = self.value("UPDATE assistants SET first_message = %s WHERE id = '%s'"
                         " RETURNING revision" % (sql_str(changed), aid))
        self.assertEqual(rev, "2")
        res = self.call(s, ["goodbye"])
        self.assertCallsim(res, res.rc == 0, "second call")
        (pc,) = res.per_call()
        self.assertCallsim(res, pc["agent_hung_up"], "the goodbye did not end the call")
        self.wait_ended([first_id, pc["call_id"]])
        one, two = self.turns(first_id), self.turns(pc["call_id"])
        self.assertEqual(one[0][1:3], ("agent", SHORT_FIRST))
        self.assertEqual(two[0][1:3], ("agent", changed))
        self.assertEqual([t[3] for t in two if t[1] == "caller"], ["goodbye"])
        self.assertEqual(two[-1][1:3], ("agent", reply_of("goodbye")))
        # the new greeting is longer, and the caller heard all of it
        self.assertCallsim(res, pc["greeting_ms"] > first_greeting + 500,
                           "greetings of %s and %s ms" % (first_greeting, pc["greeting_ms"]))


if __name__ == "__main__":
    import unittest
    unittest.main()
