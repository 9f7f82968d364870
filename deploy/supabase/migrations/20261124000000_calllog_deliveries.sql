-- 20261124000000_calllog_deliveries — the delivery ledger of calllog-worker.
--
-- One row per Twilio CallSid holding its delivery state (design §2, §3):
--   pending → processing (lease_owner + lease_expires_at) → delivered | skipped | dead,
--   with retry_wait between attempts.
-- The worker's claim is a single INSERT … ON CONFLICT (call_sid) DO UPDATE … WHERE
-- <claimable> statement against this table, which is what keeps two workers from both
-- posting one call to RD Station. rd_post_started_at is written just before the RD
-- request; a later claim that finds it set looks for the CallSid marker first.
--
-- Security: the table lives in schema `calllog`, which Supabase's REST API (PostgREST)
-- does not expose, has row level security enabled with no policy, and every privilege
-- of `anon` and `authenticated` (Supabase's API roles; absent on plain PostgreSQL) is
-- revoked. The worker connects as the table owner (`postgres` on Supabase), which RLS
-- does not restrict.
--
-- Idempotent: running it twice (or on top of an older copy) is harmless. Usable with
-- `supabase db push`, `psql -v ON_ERROR_STOP=1 [-1] -f <this file>`, and the postgres
-- image's /docker-entrypoint-initdb.d. No statement needs to run outside a transaction.

CREATE SCHEMA IF NOT EXISTS calllog;
COMMENT ON SCHEMA calllog IS
    'calllog-worker: delivery ledger of Twilio calls into RD Station CRM (not exposed to the REST API)';

-- The schema version the worker checks at start-up (ledger_check_schema).
CREATE TABLE IF NOT EXISTS calllog.schema_version (
    version     integer     PRIMARY KEY,
    description text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE calllog.schema_version IS
    'One row per applied calllog migration; calllog-worker refuses to start below the version it needs';

CREATE TABLE IF NOT EXISTS calllog.deliveries (
    call_sid           text        PRIMARY KEY CONSTRAINT deliveries_call_sid_check
                                   CHECK (call_sid <> ''),
    state              text        NOT NULL DEFAULT 'pending' CONSTRAINT deliveries_state_check
                                   CHECK (state IN ('pending', 'processing', 'retry_wait',
                                                    'delivered', 'skipped', 'dead')),
    call_status        text,
    attempts           integer     NOT NULL DEFAULT 0 CONSTRAINT deliveries_attempts_check
                                   CHECK (attempts >= 0),
    lease_owner        text,
    lease_expires_at   timestamptz,
    next_attempt_at    timestamptz,
    rd_post_started_at timestamptz,
    rd_contact_id      text,
    rd_deal_id         text,
    rd_note_id         text,
    rd_task_id         text,
    recovered          boolean     NOT NULL DEFAULT false,
    reason             text,
    last_error         text,
    last_http_status   integer,
    event              jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    -- A row being processed always says by whom and until when.
    CONSTRAINT deliveries_lease_check
        CHECK (state <> 'processing' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

COMMENT ON TABLE calllog.deliveries IS
    'Delivery state of each Twilio call (keyed by CallSid) into RD Station CRM; the guard against duplicate notes';
COMMENT ON COLUMN calllog.deliveries.state IS
    'pending | processing (leased) | retry_wait | delivered | skipped | dead';
COMMENT ON COLUMN calllog.deliveries.attempts IS
    'Claims so far (reset to 0 by calllog-admin when a dead row is replayed)';
COMMENT ON COLUMN calllog.deliveries.lease_owner IS
    'Worker holding the lease while processing; afterwards the worker that last held it';
COMMENT ON COLUMN calllog.deliveries.lease_expires_at IS
    'A processing row whose lease expired may be claimed by another worker';
COMMENT ON COLUMN calllog.deliveries.rd_post_started_at IS
    'Set just before a request to RD Station: a later attempt searches for the CallSid marker before posting';
COMMENT ON COLUMN calllog.deliveries.recovered IS
    'true when the RD entry was found by its CallSid marker instead of being posted by the final attempt';
COMMENT ON COLUMN calllog.deliveries.event IS
    'The normalized call event (JSON) as last claimed';

-- Admin queries go by state: counts, stuck processing rows, due retries, recent rows.
CREATE INDEX IF NOT EXISTS deliveries_state_updated_idx
    ON calllog.deliveries (state, updated_at);
CREATE INDEX IF NOT EXISTS deliveries_processing_lease_idx
    ON calllog.deliveries (lease_expires_at) WHERE state = 'processing';
CREATE INDEX IF NOT EXISTS deliveries_retry_due_idx
    ON calllog.deliveries (next_attempt_at) WHERE state = 'retry_wait';
CREATE INDEX IF NOT EXISTS deliveries_created_idx
    ON calllog.deliveries (created_at);

-- updated_at follows every change, the worker's and an operator's alike.
CREATE OR REPLACE FUNCTION calllog.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1
                     FROM pg_catalog.pg_trigger
                    WHERE tgrelid = 'calllog.deliveries'::regclass
                      AND tgname = 'deliveries_touch_updated_at') THEN
        CREATE TRIGGER deliveries_touch_updated_at
            BEFORE UPDATE ON calllog.deliveries
            FOR EACH ROW EXECUTE FUNCTION calllog.touch_updated_at();
    END IF;
END
$$;

-- Row level security with no policy: only the owner (and BYPASSRLS roles such as
-- Supabase's service_role) see rows, whatever grants someone adds later.
ALTER TABLE calllog.deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE calllog.schema_version ENABLE ROW LEVEL SECURITY;

REVOKE ALL ON SCHEMA calllog FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA calllog FROM PUBLIC;
REVOKE ALL ON FUNCTION calllog.touch_updated_at() FROM PUBLIC;

-- Supabase's API roles get nothing here. Plain PostgreSQL has no such roles.
DO $$
DECLARE
    api_role text;
BEGIN
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = api_role) THEN
            EXECUTE format('REVOKE ALL ON SCHEMA calllog FROM %I', api_role);
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA calllog FROM %I', api_role);
            EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA calllog FROM %I', api_role);
            EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA calllog FROM %I', api_role);
            -- Grants someone set up for future objects of this schema go too.
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA calllog REVOKE ALL ON TABLES FROM %I',
                           api_role);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA calllog REVOKE ALL ON SEQUENCES FROM %I',
                           api_role);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA calllog REVOKE ALL ON FUNCTIONS FROM %I',
                           api_role);
        END IF;
    END LOOP;
END
$$;

INSERT INTO calllog.schema_version (version, description)
VALUES (1, '20261124000000_calllog_deliveries: calllog.deliveries ledger')
ON CONFLICT (version) DO NOTHING;
