-- The demo's data (scripts/demo.sh): an organization, the offline `local`
-- assistant of a hair salon answering with the demo intents, and the phone
-- number that reaches it. Safe to run again: everything is upserted.
--
--   psql -v intents="$(cat tests/data/demo_intents.json)" -v number=+15550000001 \
--        -f scripts/seed-demo.sql
--
-- Not a migration: it is never applied by `voxbridge migrate`.

\set ON_ERROR_STOP on

INSERT INTO organizations (id, name)
VALUES ('00000000-0000-0000-0000-0000000000de', 'Demo Salon')
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;

INSERT INTO assistants (organization_id, name, mode, first_message, fallback, voice, rate,
                        intents)
VALUES ('00000000-0000-0000-0000-0000000000de', 'salon', 'local',
        'Hello, thanks for calling the salon. How can I help?',
        'Sorry, I did not catch that. Could you say it another way?',
        'en-us', 175, :'intents'::jsonb)
ON CONFLICT (organization_id, name) DO UPDATE
    SET mode = EXCLUDED.mode, first_message = EXCLUDED.first_message,
        fallback = EXCLUDED.fallback, voice = EXCLUDED.voice, rate = EXCLUDED.rate,
        intents = EXCLUDED.intents;

INSERT INTO phone_numbers (organization_id, number, assistant_id)
SELECT organization_id, :'number', id FROM assistants
 WHERE organization_id = '00000000-0000-0000-0000-0000000000de' AND name = 'salon'
ON CONFLICT (number) DO UPDATE
    SET organization_id = EXCLUDED.organization_id, assistant_id = EXCLUDED.assistant_id;
