-- 20261204000000_calllog_followups — the open follow-up task of each RD Station deal.
--
-- A missed inbound call (no-answer, busy, canceled) from a known contact opens one
-- follow-up call task on the contact's deal; the next answered call with that customer
-- marks it done (design §3 "Missed calls", worker/followup.h). One row per deal:
--   opening (call_sid = the missed call taking the slot, written before POST /tasks)
--     → open (task_id recorded) → closed (closed_by = the answered call).
-- Taking the slot is one INSERT … ON CONFLICT (deal_id) DO UPDATE … WHERE <free>
-- statement, so two workers with missed calls on one deal cannot both open a task. A row
-- left `opening` by a call that is no longer being delivered (its calllog.deliveries row
-- finished) may be taken over; the taker first searches the deal's tasks for the opener's
-- marker (recover_from), in case the opener created the task and died before recording it.
--
-- Same security as calllog.deliveries: schema `calllog`, row level security with no
-- policy, nothing for Supabase's API roles. Idempotent, usable with `supabase db push`
-- and psql; applied by compose and deploy/run-local.sh after the first migration.

CREATE TABLE IF NOT EXISTS calllog.followups (
    deal_id      text        PRIMARY KEY CONSTRAINT followups_deal_id_check CHECK (deal_id <> ''),
    state        text        NOT NULL CONSTRAINT followups_state_check
                             CHECK (state IN ('opening', 'open', 'closed')),
    call_sid     text        NOT NULL,
    customer     text        NOT NULL,
    recover_from text,
    task_id      text,
    owner_id     text,
    due_at       timestamptz,
    closed_by    text,
    opened_at    timestamptz NOT NULL DEFAULT now(),
    closed_at    timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT followups_open_check CHECK (state = 'opening' OR task_id IS NOT NULL)
);

COMMENT ON TABLE calllog.followups IS
    'The follow-up task of a missed call, one per RD deal: at most one open at a time';
COMMENT ON COLUMN calllog.followups.state IS
    'opening (task being created by call_sid) | open (task_id) | closed (closed_by)';
COMMENT ON COLUMN calllog.followups.call_sid IS
    'The missed call that opened (or is opening) the follow-up; its marker is in the task';
COMMENT ON COLUMN calllog.followups.customer IS
    'The customer phone (E.164) whose answered call closes the follow-up';
COMMENT ON COLUMN calllog.followups.recover_from IS
    'Set while a worker took over an opening row: the CallSid whose follow-up marker it searches first';

CREATE INDEX IF NOT EXISTS followups_state_updated_idx ON calllog.followups (state, updated_at);

-- updated_at follows every change (calllog.touch_updated_at, from the first migration).
CREATE OR REPLACE TRIGGER followups_touch_updated_at
    BEFORE UPDATE ON calllog.followups
    FOR EACH ROW EXECUTE FUNCTION calllog.touch_updated_at();

-- Row level security with no policy, and no grants: the first migration revoked Supabase's
-- API roles' USAGE on schema calllog and their default privileges on its new tables.
ALTER TABLE calllog.followups ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON calllog.followups FROM PUBLIC;

INSERT INTO calllog.schema_version (version, description)
VALUES (2, '20261204000000_calllog_followups: calllog.followups, one open follow-up per deal')
ON CONFLICT (version) DO NOTHING;
