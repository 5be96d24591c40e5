-- 001_init: tenants and their API keys, assistants, phone numbers, calls, carrier
-- status callbacks and transcript turns. Applied by `voxbridge migrate` in one
-- transaction (no BEGIN/COMMIT here). Every row belongs to an organization and
-- row-level security keeps organizations apart for any role that is not the
-- tables' owner (see docs/data.md).

-- ---- helpers ---------------------------------------------------------------

-- The organization of records nothing else places: calls to assistants that
-- come from the config file rather than from this database.
CREATE FUNCTION vb_default_org() RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT '00000000-0000-0000-0000-000000000001'::uuid $$;

-- The organization a session acts for: SET voxbridge.org_id = '<uuid>' (or
-- set_config('voxbridge.org_id', ..., true) per transaction). NULL when unset.
CREATE FUNCTION vb_current_org() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('voxbridge.org_id', true), '')::uuid $$;

-- TEXT as a uuid, or NULL when it is not one (no error).
CREATE FUNCTION vb_uuid_or_null(t text) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE WHEN t ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                    THEN t::uuid END
    $$;

-- Nanoseconds since the epoch (the store's record times) as a timestamp.
CREATE FUNCTION vb_ts_ns(ns bigint) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT to_timestamp(ns / 1000000000.0) $$;

-- Order of a call's statuses: a status callback only ever moves a call forward
-- (carriers retry and reorder them). Terminal statuses share the top rank.
CREATE FUNCTION vb_call_status_rank(s text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE s
            WHEN 'queued' THEN 1
            WHEN 'initiated' THEN 2
            WHEN 'ringing' THEN 3
            WHEN 'in-progress' THEN 4
            WHEN 'completed' THEN 10
            WHEN 'busy' THEN 10
            WHEN 'no-answer' THEN 10
            WHEN 'canceled' THEN 10
            WHEN 'failed' THEN 10
            ELSE 0
        END
    $$;

-- ---- tenants ---------------------------------------------------------------

CREATE TABLE organizations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO organizations (id, name) VALUES (vb_default_org(), 'default');

-- API keys are never stored: only the SHA-256 of the whole key, and a prefix
-- (the first characters of the key, e.g. "vbk_3f9a1c2e") to find the row.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name text NOT NULL DEFAULT '',
    prefix text NOT NULL UNIQUE CHECK (length(prefix) BETWEEN 8 AND 32),
    key_sha256 bytea NOT NULL CHECK (octet_length(key_sha256) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);

CREATE INDEX api_keys_organization ON api_keys (organization_id);

-- ---- assistants ------------------------------------------------------------

-- Field limits match what a call carries (common/conf.h vb_assistant_t).
CREATE TABLE assistants (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.+-]{1,63}$'),
    mode text NOT NULL DEFAULT 'echo' CHECK (mode IN ('echo', 'local')),
    first_message text NOT NULL DEFAULT '' CHECK (octet_length(first_message) < 256),
    fallback text NOT NULL DEFAULT '' CHECK (octet_length(fallback) < 256),
    voice text NOT NULL DEFAULT 'en-us' CHECK (octet_length(voice) < 64),
    language text NOT NULL DEFAULT 'en-US' CHECK (octet_length(language) < 16),
    rate integer NOT NULL DEFAULT 175 CHECK (rate BETWEEN 80 AND 450),
    echo_delay_ms integer NOT NULL DEFAULT 0 CHECK (echo_delay_ms BETWEEN 0 AND 5000),
    intents jsonb NOT NULL DEFAULT '[]'
        CHECK (jsonb_typeof(intents) = 'array' AND octet_length(intents::text) < 8000),
    -- for the provider pipelines (not used by echo and local yet)
    system_prompt text NOT NULL DEFAULT '',
    llm_provider text,
    stt_provider text,
    tts_provider text,
    provider_settings jsonb NOT NULL DEFAULT '{}',
    -- bumped by a trigger on every update: calls carry it, brokers cache by it
    revision bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name),
    UNIQUE (organization_id, id)
);

CREATE FUNCTION vb_assistants_touch() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        NEW.revision := OLD.revision + 1;
        NEW.updated_at := now();
        RETURN NEW;
    END
    $$;

CREATE TRIGGER assistants_revision BEFORE UPDATE ON assistants
    FOR EACH ROW EXECUTE FUNCTION vb_assistants_touch();

-- ---- phone numbers ---------------------------------------------------------

CREATE TABLE phone_numbers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    number text NOT NULL UNIQUE CHECK (number ~ '^\+[1-9][0-9]{1,14}$'),
    assistant_id uuid, -- NULL: the number is not in service
    carrier text NOT NULL DEFAULT 'twilio',
    carrier_account text NOT NULL DEFAULT '', -- which carrier credentials (account SID)
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, assistant_id) REFERENCES assistants (organization_id, id)
        ON DELETE SET NULL (assistant_id)
);

CREATE INDEX phone_numbers_assistant ON phone_numbers (assistant_id);

-- ---- calls -----------------------------------------------------------------

CREATE TABLE calls (
    id uuid PRIMARY KEY, -- our call_id (the TwiML parameter, every record's key)
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    assistant_id uuid,
    assistant_name text NOT NULL DEFAULT '',
    direction text NOT NULL DEFAULT 'inbound' CHECK (direction IN ('inbound', 'outbound')),
    from_number text NOT NULL DEFAULT '',
    to_number text NOT NULL DEFAULT '',
    carrier text NOT NULL DEFAULT 'twilio',
    carrier_call_sid text,
    stream_sid text,
    status text NOT NULL DEFAULT 'in-progress'
        CHECK (vb_call_status_rank(status) > 0),
    started_at timestamptz,
    answered_at timestamptz,
    ended_at timestamptz,
    duration_ms bigint,
    end_reason text,
    failed boolean NOT NULL DEFAULT false,
    media_stats jsonb NOT NULL DEFAULT '{}', -- frames in/out, underruns, late frames...
    recording_path text,
    language text,
    summary text,
    sentiment text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, assistant_id) REFERENCES assistants (organization_id, id)
        ON DELETE SET NULL (assistant_id)
);

CREATE INDEX calls_carrier_call_sid ON calls (carrier_call_sid);
CREATE INDEX calls_organization_started ON calls (organization_id, started_at DESC);
CREATE INDEX calls_assistant ON calls (assistant_id);

-- Every status callback the carrier sent, once: carriers retry them.
CREATE TABLE call_status_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    call_sid text NOT NULL,
    sequence_number integer NOT NULL,
    status text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}', -- every form parameter of the callback
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (call_sid, sequence_number)
);

CREATE INDEX call_status_events_organization ON call_status_events (organization_id);

-- What was said, in order. event_ns is the record's time stamp: with call_id it
-- makes a replay of the store's spool insert nothing twice.
CREATE TABLE transcript_turns (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    call_id uuid NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq integer NOT NULL,
    speaker text NOT NULL CHECK (speaker IN ('caller', 'agent')),
    text text NOT NULL,
    start_ms bigint,
    end_ms bigint,
    interrupted boolean NOT NULL DEFAULT false, -- agent: cut off by the caller
    intent text,
    stt_ms integer,
    llm_first_token_ms integer,
    tts_first_audio_ms integer,
    v2v_ms integer, -- caller stopped speaking -> first agent audio
    event_ns bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (call_id, seq),
    UNIQUE (call_id, event_ns)
);

CREATE INDEX transcript_turns_organization ON transcript_turns (organization_id);

-- ---- row-level security ------------------------------------------------------
-- A role that does not own the tables (and has no BYPASSRLS) sees and writes
-- only the rows of the organization in voxbridge.org_id. voxbridge itself
-- connects as the owner: owners are not subject to these policies.

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON organizations
    USING (id = vb_current_org()) WITH CHECK (id = vb_current_org());

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON api_keys
    USING (organization_id = vb_current_org())
    WITH CHECK (organization_id = vb_current_org());

ALTER TABLE assistants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON assistants
    USING (organization_id = vb_current_org())
    WITH CHECK (organization_id = vb_current_org());

ALTER TABLE phone_numbers ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON phone_numbers
    USING (organization_id = vb_current_org())
    WITH CHECK (organization_id = vb_current_org());

ALTER TABLE calls ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON calls
    USING (organization_id = vb_current_org())
    WITH CHECK (organization_id = vb_current_org());

ALTER TABLE call_status_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON call_status_events
    USING (organization_id = vb_current_org())
    WITH CHECK (organization_id = vb_current_org());

ALTER TABLE transcript_turns ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON transcript_turns
    USING (organization_id = vb_current_org())
    WITH CHECK (organization_id = vb_current_org());
