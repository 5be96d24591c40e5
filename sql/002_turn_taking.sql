-- voxbridge schema 002: turn-taking settings per assistant (local engine).
-- barge_in_ms: how long the caller must speak over the agent to interrupt it;
-- end_silence_ms: how long a silence ends the caller's turn. Defaults are the
-- values every assistant had before (common/conf.h VB_*_DEFAULT).
ALTER TABLE assistants
    ADD COLUMN barge_in_ms integer NOT NULL DEFAULT 300
        CHECK (barge_in_ms BETWEEN 60 AND 5000),
    ADD COLUMN end_silence_ms integer NOT NULL DEFAULT 500
        CHECK (end_silence_ms BETWEEN 200 AND 5000);
