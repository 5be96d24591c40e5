-- voxbridge schema 003: what an agent turn that was cut off meant to say.
-- planned_text: the whole reply, when the turn was interrupted (text keeps what
-- the caller heard of it); NULL otherwise.
-- broker_restarted: the reply was cut by the death of the AI broker process
-- rather than by the caller or a hang-up.
ALTER TABLE transcript_turns
    ADD COLUMN planned_text text,
    ADD COLUMN broker_restarted boolean NOT NULL DEFAULT false;
