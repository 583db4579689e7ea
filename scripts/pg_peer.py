#!/usr/bin/env python3
"""The PostgreSQL peer of `ansinh bench embedded`: the same month paid by a PostgreSQL 15
application written the way a careful G2P team would write it (issue 11, BENCHMARKS.md
"PostgreSQL peer"). Python's stdlib only; PostgreSQL is driven through `psql` on stdin.

    python3 scripts/pg_peer.py [--lines N] [--rounds R] [--json] [--keep] [--tmp DIR]

Each round, in a fresh throwaway cluster (initdb into a temp dir, a unix socket in that dir,
fsync, synchronous_commit and full_page_writes on):

  set-up, untimed: the program, its Decree 20 categories and standard levels; N beneficiaries
    enrolled (the same people, in the same order, as `ansinh bench embedded --lines N`:
    `demo_data::Beneficiaries` with seed 7, province 056, re-implemented below), one
    `beneficiary.enrolled` event each; the month's budget funded with exactly its payouts;
    VACUUM ANALYZE and a CHECKPOINT.
  timed: the month's N payout lines (one per beneficiary, at the entitlement) in batches of
    10,000 lines, ONE transaction per batch on one connection: COPY the lines into a temp
    staging table; validate them set-based (one statement, each line looked up by index in
    the beneficiaries, their categories and the payouts already made; a line that fails is
    rejected with its reason code and counted, as the engine's are);
    insert the payouts (UNIQUE (citizen_id, program_id, period)); debit the budget under its
    CHECK (balance >= 0); two ledger postings per line (double entry); one event per line and
    one per batch appended to the SHA-256 hash-chained events table; COMMIT (one WAL flush).
    The clock runs from the first batch sent to the last COMMIT answered.
  checks, untimed: payouts = lines accepted; the ledger sums to 0; budget = funded - paid
    (and equals its ledger account); the whole chain (every event) recomputed in Python with
    hashlib; a re-run of batch 1 is refused (same batch id: its primary key; same lines under
    a new id: all rejected as duplicate_payout; the same payouts inserted behind the
    validation's back: the unique constraint). Any failed check: exit status 1.

Prints lines/s, seconds, batches, the settings in force as a fresh session reads them from
pg_settings, and the load average; `--json` prints one JSON object instead.
"""

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BATCH_LINES = 10_000  # as `ansinh bench embedded` (src/bench/embedded.rs, BATCH_LINES)
PROGRAM = "social-allowance"
PROVINCE = "056"
PERIOD = "2025-01"
SEED = 7
GENESIS = bytes(32)

# Server settings. fsync, synchronous_commit and full_page_writes are PostgreSQL's defaults,
# given explicitly so no postgresql.conf can turn them off. The rest is the tuning any DBA gives
# a dedicated OLTP box with 23 GiB and an SSD; none of it weakens durability:
#   shared_buffers 1GB (the default 128MB is smaller than this month's working set),
#   max_wal_size 4GB (the month writes ~400 MB of WAL at 200,000 lines; at the default 1GB a
#     checkpoint is requested after ~540 MB, so larger months would checkpoint mid-run; one
#     still runs every checkpoint_timeout, 5 min, and one after set-up; the checkpoints made
#     during the timed part are reported),
#   random_page_cost 1.1 (an SSD: index probes are not 4x a sequential read),
#   work_mem 64MB (a batch's sorts, 10,000 rows of ~600 bytes, stay in memory; at the default
#     4MB the chain's sort spills to disk),
#   jit off (10,000-row OLTP statements: compiling them does not pay; one run at 20,000 lines
#     with it on was 11 % slower, within this machine's noise but not faster).
# Override or add any with --set NAME=VALUE.
SERVER_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "1GB",
    "max_wal_size": "4GB",
    "random_page_cost": "1.1",
    "effective_cache_size": "8GB",
    "work_mem": "64MB",
    "jit": "off",
}
REPORTED_SETTINGS = [
    "server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "wal_level",
    "shared_buffers", "wal_buffers", "work_mem", "max_wal_size", "checkpoint_timeout", "commit_delay", "random_page_cost", "jit",
]


# ---- the month: `demo_data::Beneficiaries` (src/cli/demo_data.rs), seed 7, province 056 ------

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15

# (category, weight per 10,000, age range), CATEGORY_MIX.
CATEGORY_MIX = [
    ("1a", 20, (0, 3)), ("1b", 40, (4, 15)), ("2", 20, (16, 21)), ("3a", 5, (0, 3)), ("3b", 10, (4, 15)),
    ("4", 250, (22, 50)), ("5a", 600, (60, 79)), ("5a80", 300, (80, 95)), ("5b", 400, (75, 79)),
    ("5c", 2900, (80, 99)), ("5d", 100, (60, 90)), ("6a", 1100, (18, 59)), ("6b", 900, (60, 90)),
    ("6c", 2400, (18, 59)), ("6d", 700, (6, 15)), ("7", 150, (0, 2)), ("8", 105, (18, 60)),
]
BIRTH_PROVINCES = [("056", 70), ("058", 20), ("054", 3), ("052", 2), ("079", 2), ("001", 1), ("040", 1), ("064", 1)]
BANK_MIX = [
    ("970405", 30), ("970436", 14), ("970418", 12), ("970415", 10), ("970422", 5), ("970407", 4), ("970416", 3),
    ("970432", 3), ("970403", 3), ("970423", 2), ("970449", 4), ("970443", 1), ("970437", 1), ("970441", 1),
    ("970426", 1), ("970440", 1), ("970448", 1), ("970431", 1), ("970454", 1), ("970446", 1), ("970452", 1),
    ("970419", 1), ("970428", 1), ("970425", 1), ("970409", 1),
]
FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý"]
FAMILY_ASCII = ["NGUYEN", "TRAN", "LE", "PHAM", "HOANG", "HUYNH", "PHAN", "VU", "VO", "DANG", "BUI", "DO", "HO", "NGO", "DUONG", "LY"]
GIVEN_M = [("Văn An", "VAN AN"), ("Văn Bình", "VAN BINH"), ("Đức Cường", "DUC CUONG"), ("Minh Dũng", "MINH DUNG"),
           ("Văn Hùng", "VAN HUNG"), ("Quang Nam", "QUANG NAM"), ("Hữu Sơn", "HUU SON"), ("Anh Tuấn", "ANH TUAN"),
           ("Văn Tâm", "VAN TAM"), ("Thanh Phong", "THANH PHONG")]
GIVEN_F = [("Thị Hà", "THI HA"), ("Thị Hạnh", "THI HANH"), ("Thị Lan", "THI LAN"), ("Ngọc Linh", "NGOC LINH"),
           ("Thị Mai", "THI MAI"), ("Thu Phương", "THU PHUONG"), ("Thị Thảo", "THI THAO"), ("Thu Trang", "THU TRANG"),
           ("Thị Vân", "THI VAN"), ("Hải Yến", "HAI YEN")]
# Decree 20/2021 coefficients (src/domain/program.rs, DECREE_20_CATEGORIES).
COEFFICIENTS = {"1a": "2.5", "1b": "1.5", "2": "1.5", "3a": "2.5", "3b": "2.0", "4": "1.0", "5a": "1.5", "5a80": "2.0",
                "5b": "1.0", "5c": "1.0", "5d": "3.0", "6a": "2.0", "6b": "2.5", "6c": "1.5", "6d": "2.0", "7": "1.5", "8": "1.5"}
# National standard levels (demo_data::program_rules): (effective from, VND, legal basis).
LEVELS = [("2021-07", 360_000, "Decree 20/2021/NĐ-CP Art. 4(2)"), ("2024-07", 500_000, "Decree 76/2024/NĐ-CP")]


class Rng:
    """SplitMix64, as demo_data::Rng."""

    def __init__(self, seed):
        self.s = (seed ^ GOLDEN) & MASK

    def next_u64(self):
        self.s = z = (self.s + GOLDEN) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return self.next_u64() % n

    def weighted(self, weights, total):
        x = self.below(total)
        for i, w in enumerate(weights):
            if x < w:
                return i
            x -= w
        return len(weights) - 1


def beneficiaries(n, seed=SEED):
    """The first n of demo_data::Beneficiaries::new(seed, "056", PROGRAM), in order, as dicts."""
    rng = Rng(seed)
    cat_w = [c[1] for c in CATEGORY_MIX]
    prov_w = [p[1] for p in BIRTH_PROVINCES]
    bank_w = [b[1] for b in BANK_MIX]
    cat_t, prov_t, bank_t = sum(cat_w), sum(prov_w), sum(bank_w)
    used = set()
    made = 0
    while made < n:
        category, _, (age_lo, age_hi) = CATEGORY_MIX[rng.weighted(cat_w, cat_t)]
        age = age_lo + rng.below(age_hi - age_lo + 1)
        year = 2025 - age
        month = 1 + rng.below(12)
        day = 1 + rng.below(28)
        while (year, month, day) > (2024, 12, 19):
            year -= 1
        female = rng.below(100) < 55
        g = (year - 1900) // 100 * 2 + (1 if female else 0)
        birth_province = BIRTH_PROVINCES[rng.weighted(prov_w, prov_t)][0]
        citizen_id = f"{birth_province}{g}{year % 100:02}{rng.below(1_000_000):06}"
        if citizen_id in used:
            continue
        used.add(citizen_id)
        family = rng.below(len(FAMILY))
        given, given_ascii = (GIVEN_F if female else GIVEN_M)[rng.below(10)]
        bin_ = BANK_MIX[rng.weighted(bank_w, bank_t)][0]
        length = 10 + rng.below(5)
        account_no = "".join(str(1 + rng.below(9)) if i == 0 else str(rng.below(10)) for i in range(length))
        start_index = 2021 * 12 + 6 + rng.below(42)
        start = max(start_index, year * 12 + (month - 1) + 1)
        yield {
            "citizen_id": citizen_id,
            "full_name": f"{FAMILY[family]} {given}",
            "date_of_birth": f"{year:04}-{month:02}-{day:02}",
            "sex": "female" if female else "male",
            "category": category,
            "effective_from": f"{start // 12:04}-{start % 12 + 1:02}",
            "bin": bin_,
            "account_no": account_no,
            "holder_name": f"{FAMILY_ASCII[family]} {given_ascii}",
            "attestation_ref": f"VNEID-L2-{seed}-{made:07}",
        }
        made += 1


def entitlement(category, period=PERIOD):
    """VND for a category in a period: the national level in force times the coefficient."""
    level = max((amount for start, amount, _ in LEVELS if start <= period), default=None)
    tenths = int(COEFFICIENTS[category].replace(".", ""))  # every coefficient has one decimal
    return level * tenths // 10


# ---- the application: schema and the batch procedure ----------------------------------------

SCHEMA = r"""
CREATE TABLE programs (
    program_id  text PRIMARY KEY,
    name        text NOT NULL,
    legal_basis text NOT NULL
);
CREATE TABLE program_categories (
    program_id  text NOT NULL REFERENCES programs,
    category    text NOT NULL,
    coefficient numeric(4,2) NOT NULL CHECK (coefficient > 0),
    PRIMARY KEY (program_id, category)
);
CREATE TABLE standard_levels (          -- province NULL: the national level
    program_id     text NOT NULL REFERENCES programs,
    province       char(3),
    effective_from char(7) NOT NULL CHECK (effective_from ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    amount         bigint NOT NULL CHECK (amount > 0),
    legal_basis    text NOT NULL,
    UNIQUE NULLS NOT DISTINCT (program_id, province, effective_from)
);
CREATE TABLE beneficiaries (            -- one enrollment per person, as in the bench's month
    citizen_id     char(12) PRIMARY KEY CHECK (citizen_id ~ '^[0-9]{12}$'),
    full_name      text NOT NULL,
    date_of_birth  date NOT NULL,
    sex            text NOT NULL CHECK (sex IN ('male', 'female')),
    province       char(3) NOT NULL,
    program_id     text NOT NULL,
    category       text NOT NULL,
    effective_from char(7) NOT NULL,
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'terminated')),
    bin            char(6) NOT NULL,
    account_no     text NOT NULL CHECK (account_no ~ '^[0-9]{6,19}$'),
    holder_name    text NOT NULL,
    attestation    text,
    FOREIGN KEY (program_id, category) REFERENCES program_categories
);
CREATE TABLE budgets (
    province   char(3) NOT NULL,
    program_id text NOT NULL REFERENCES programs,
    period     char(7) NOT NULL,
    funded     bigint NOT NULL DEFAULT 0,
    instructed bigint NOT NULL DEFAULT 0,
    balance    bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    CHECK (balance = funded - instructed),
    PRIMARY KEY (province, program_id, period)
);
CREATE TABLE payout_batches (
    batch_id         text PRIMARY KEY,
    command_id       text NOT NULL,
    program_id       text NOT NULL REFERENCES programs,
    province         char(3) NOT NULL,
    period           char(7) NOT NULL,
    lines_total      int NOT NULL,
    lines_instructed int NOT NULL,
    lines_rejected   int NOT NULL,
    submitted_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE payouts (
    payout_id   text PRIMARY KEY,
    batch_id    text NOT NULL REFERENCES payout_batches,
    line_no     int NOT NULL,
    citizen_id  char(12) NOT NULL REFERENCES beneficiaries,
    program_id  text NOT NULL,
    province    char(3) NOT NULL,
    period      char(7) NOT NULL,
    amount      bigint NOT NULL CHECK (amount > 0),
    bin         char(6) NOT NULL,
    account_no  text NOT NULL,
    holder_name text NOT NULL,
    status      text NOT NULL DEFAULT 'instructed',
    CONSTRAINT payouts_once UNIQUE (citizen_id, program_id, period)   -- nothing paid twice
);
CREATE TABLE payout_line_rejections (
    batch_id   text NOT NULL REFERENCES payout_batches,
    line_no    int NOT NULL,
    citizen_id text NOT NULL,
    amount     text NOT NULL,
    code       text NOT NULL,
    PRIMARY KEY (batch_id, line_no)
);
-- Double entry: every entry is two postings, the account debited (-amount) and the one
-- credited (+amount), so all postings sum to zero.
CREATE TABLE ledger_postings (
    posting_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_ref  text NOT NULL,
    account    text NOT NULL,
    amount     bigint NOT NULL,
    posted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_postings_account ON ledger_postings (account);

-- The events: append-only, hash-chained.
--   hash = sha256(prev_hash || int8send(seq) || convert_to(payload, 'UTF8')),
--   prev_hash of seq 1 = 32 zero bytes; payload is the event's JSON text, hashed as stored.
CREATE TABLE events (
    seq       bigint PRIMARY KEY,
    type      text NOT NULL,
    payload   text NOT NULL,
    prev_hash bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash      bytea NOT NULL CHECK (octet_length(hash) = 32)
);
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
-- The chain's head: its row lock serializes appenders (a second writer waits, then reads the
-- head the first one left), so the chain cannot fork.
CREATE TABLE chain_head (
    id   int PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash bytea NOT NULL
);
INSERT INTO chain_head VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- The chain is computed set-based, with a running aggregate: sha256_chain(item) OVER (ORDER BY
-- n ROWS UNBOUNDED PRECEDING) folds chain_step left to right, one call per event, in order
-- (a window whose frame starts at the partition's first row is advanced, never restarted).
-- Its first input is the head's hash: the step is strict and has no initial value, so that
-- first input becomes the state, and each later row's state is its event's hash. Chosen over
-- a recursive CTE (one join per step, plans that can go quadratic) and over a plpgsql loop
-- filling an array (as fast: 24 vs 26 ms per 10,000 events here, but procedural where the
-- rest is one statement per step). The step is plpgsql: as a LANGUAGE sql function it is not
-- inlined into an aggregate and cost 35-47 ms per 10,000.
CREATE FUNCTION chain_step(state bytea, item bytea) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$ BEGIN RETURN sha256(state || item); END $$;
CREATE AGGREGATE sha256_chain(bytea) (SFUNC = chain_step, STYPE = bytea);

-- Appends the rows of the session's temp table new_events (n = 1..k, in order) to the chain.
CREATE FUNCTION append_events() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    head record;
    added bigint;
BEGIN
    SELECT seq, hash INTO head FROM chain_head WHERE id = 1 FOR UPDATE;
    WITH input AS (
        SELECT 0 AS n, NULL::text AS type, NULL::text AS payload, head.hash AS item
        UNION ALL
        SELECT n, type, payload, int8send(head.seq + n) || convert_to(payload, 'UTF8') FROM new_events
    ), chained AS (
        SELECT n, type, payload, sha256_chain(item) OVER (ORDER BY n ROWS UNBOUNDED PRECEDING) AS hash FROM input
    ), linked AS (
        SELECT n, type, payload, lag(hash) OVER (ORDER BY n) AS prev_hash, hash FROM chained
    )
    INSERT INTO events (seq, type, payload, prev_hash, hash)
    SELECT head.seq + n, type, payload, prev_hash, hash FROM linked WHERE n > 0;
    GET DIAGNOSTICS added = ROW_COUNT;
    UPDATE chain_head SET seq = e.seq, hash = e.hash
      FROM events e WHERE chain_head.id = 1 AND e.seq = head.seq + added;
    RETURN added;
END $$;

-- One payout batch, from the session's temp table staging (line_no, citizen_id, amount as
-- sent). Runs inside the caller's transaction; any error (a batch id already used, the budget's
-- CHECK, a unique violation from a concurrent batch) rolls the whole batch back.
CREATE FUNCTION submit_payout_batch(p_batch text, p_command text, p_program text, p_province text, p_period text,
        OUT lines_total int, OUT instructed int, OUT rejected int, OUT paid bigint,
        OUT validate_ms float8, OUT write_ms float8, OUT events_ms float8)
LANGUAGE plpgsql AS $$
DECLARE
    level bigint;
    at text := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
    t0 timestamptz := clock_timestamp();
    t1 timestamptz;
    t2 timestamptz;
BEGIN
    -- The standard level in force: the national one, or the province's when higher.
    SELECT max(l.amount) INTO level FROM (
        SELECT DISTINCT ON (province) amount FROM standard_levels
         WHERE program_id = p_program AND (province IS NULL OR province = p_province) AND effective_from <= p_period
         ORDER BY province, effective_from DESC) l;
    IF level IS NULL THEN
        RAISE EXCEPTION 'standard_level_missing: no standard level for % in %', p_province, p_period;
    END IF;

    -- Every line classified in one statement: the first failed check gives its code. Each line
    -- is looked up by index (its beneficiary, the category's coefficient, any payout already
    -- made for the person, program and period), as a lateral subquery the OFFSET 0 keeps from
    -- being flattened into a join and scalar subqueries that are never hashed, so a batch
    -- costs the same whatever the size of the register and of the payout history, and
    -- whatever the statistics say. Left to the planner, a payouts table analyzed while empty
    -- (and not yet re-analyzed by autovacuum) turned the duplicate check into a nested loop
    -- over all the month's payouts (108 s for one batch at 200,000 lines) or a hash of all of
    -- them per batch; with fresh statistics it still hashed all 200,000 beneficiaries per
    -- batch (87 ms) rather than make 10,000 index probes (21 ms).
    INSERT INTO checked (line_no, citizen_id, amount_sent, amount, code, bin, account_no, holder_name)
    SELECT s.line_no, s.citizen_id, s.amount, a.amount,
           CASE
               WHEN s.citizen_id !~ '^[0-9]{12}$' THEN 'citizen_id_invalid'
               WHEN s.occurrence > 1 THEN 'duplicate_line'
               WHEN a.amount IS NULL THEN 'amount_invalid'
               WHEN b.citizen_id IS NULL OR b.program_id <> p_program THEN 'not_enrolled'
               WHEN b.province <> p_province THEN 'province_mismatch'
               WHEN b.effective_from > p_period THEN 'not_yet_eligible'
               WHEN b.status = 'suspended' THEN 'beneficiary_suspended'
               WHEN b.status = 'terminated' THEN 'beneficiary_terminated'
               WHEN b.paid_by IS NOT NULL THEN 'duplicate_payout'
               WHEN a.amount <> b.entitled THEN 'amount_mismatch'
           END,
           b.bin, b.account_no, b.holder_name
      FROM (SELECT line_no, citizen_id, amount,
                   row_number() OVER (PARTITION BY citizen_id ORDER BY line_no) AS occurrence
              FROM staging) s
      CROSS JOIN LATERAL (SELECT CASE WHEN s.amount ~ '^[1-9][0-9]{0,14}$' THEN s.amount::bigint END AS amount) a
      LEFT JOIN LATERAL (
          SELECT b.citizen_id, b.program_id, b.province, b.effective_from, b.status, b.bin, b.account_no, b.holder_name,
                 round(level * (SELECT c.coefficient FROM program_categories c
                                 WHERE c.program_id = b.program_id AND c.category = b.category)) AS entitled,
                 (SELECT p.payout_id FROM payouts p
                   WHERE p.citizen_id = b.citizen_id AND p.program_id = p_program AND p.period = p_period) AS paid_by
            FROM beneficiaries b
           WHERE b.citizen_id = s.citizen_id::char(12)
          OFFSET 0) b ON true;

    SELECT count(*), count(*) FILTER (WHERE code IS NULL), count(*) FILTER (WHERE code IS NOT NULL),
           coalesce(sum(amount) FILTER (WHERE code IS NULL), 0)
      INTO lines_total, instructed, rejected, paid FROM checked;
    IF lines_total = 0 THEN
        RAISE EXCEPTION 'batch_empty: the batch has no lines';
    END IF;
    t1 := clock_timestamp();

    INSERT INTO payout_batches (batch_id, command_id, program_id, province, period, lines_total, lines_instructed, lines_rejected)
    VALUES (p_batch, p_command, p_program, p_province, p_period, lines_total, instructed, rejected);
    INSERT INTO payouts (payout_id, batch_id, line_no, citizen_id, program_id, province, period, amount, bin, account_no, holder_name)
    SELECT p_batch || '-' || lpad(line_no::text, 6, '0'), p_batch, line_no, citizen_id::char(12), p_program, p_province, p_period,
           amount, bin, account_no, holder_name
      FROM checked WHERE code IS NULL;
    INSERT INTO payout_line_rejections (batch_id, line_no, citizen_id, amount, code)
    SELECT p_batch, line_no, left(citizen_id, 32), left(amount_sent, 32), code FROM checked WHERE code IS NOT NULL;
    UPDATE budgets SET instructed = budgets.instructed + paid, balance = balance - paid
     WHERE province = p_province AND program_id = p_program AND period = p_period;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'budget_missing: no budget for % % %', p_province, p_program, p_period;
    END IF;
    INSERT INTO ledger_postings (entry_ref, account, amount)
    SELECT p_batch || '-' || lpad(line_no::text, 6, '0'), leg.account, leg.amount
      FROM checked
     CROSS JOIN LATERAL (VALUES ('budget:' || p_province || ':' || p_program || ':' || p_period, -checked.amount),
                                ('clearing:' || checked.bin, checked.amount)) AS leg(account, amount)
     WHERE code IS NULL;
    t2 := clock_timestamp();

    -- The batch's events: payout_batch.submitted, then one per line in line order. json, not
    -- jsonb: the payload is stored and hashed as text, and json_build_object writes it directly
    -- (70 vs 110 ms per 10,000 here).
    INSERT INTO new_events (n, type, payload)
    SELECT 1, 'payout_batch.submitted', json_build_object(
               'id', p_command || '/1@bench', 'command_id', p_command, 'at', at, 'sender', 'bench', 'v', 1,
               'type', 'payout_batch.submitted',
               'data', json_build_object('batch_id', p_batch, 'program_id', p_program, 'province', p_province,
                                          'period', p_period, 'lines_total', lines_total,
                                          'lines_instructed', instructed, 'lines_rejected', rejected))::text
    UNION ALL
    SELECT 1 + line_no,
           CASE WHEN code IS NULL THEN 'payout.instructed' ELSE 'payout_line.rejected' END,
           json_build_object(
               'id', p_command || '/' || (1 + line_no) || '@bench', 'command_id', p_command, 'at', at,
               'sender', 'bench', 'v', 1,
               'type', CASE WHEN code IS NULL THEN 'payout.instructed' ELSE 'payout_line.rejected' END,
               'data', CASE WHEN code IS NULL THEN
                   json_build_object('payout_id', p_batch || '-' || lpad(line_no::text, 6, '0'), 'kind', 'regular',
                                      'batch_id', p_batch, 'line_no', line_no, 'citizen_id', citizen_id,
                                      'program_id', p_program, 'province', p_province, 'period', p_period,
                                      'amount', amount::text,
                                      'account', json_build_object('bin', bin::text, 'account_no', account_no,
                                                                    'holder_name', holder_name))
               ELSE
                   json_build_object('batch_id', p_batch, 'line_no', line_no, 'citizen_id', left(citizen_id, 32),
                                      'amount', left(amount_sent, 32), 'code', code)
               END)::text
      FROM checked;
    PERFORM append_events();
    validate_ms := 1000 * extract(epoch FROM t1 - t0);
    write_ms := 1000 * extract(epoch FROM t2 - t1);
    events_ms := 1000 * extract(epoch FROM clock_timestamp() - t2);
END $$;
"""

# Per session: the batch's staging tables, emptied at every COMMIT (temp tables are not
# WAL-logged).
SESSION = """
CREATE TEMP TABLE staging (line_no int NOT NULL, citizen_id text NOT NULL, amount text NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE checked (line_no int PRIMARY KEY, citizen_id text, amount_sent text, amount bigint, code text,
                           bin char(6), account_no text, holder_name text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE new_events (n bigint PRIMARY KEY, type text NOT NULL, payload text NOT NULL) ON COMMIT DELETE ROWS;
"""


def sql_literal(s):
    return "'" + str(s).replace("'", "''") + "'"


def copy_field(s):
    s = str(s)
    if any(c in s for c in "\\\t\n\r"):
        s = s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return s


def json_text(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


# ---- the cluster ----------------------------------------------------------------------------

class Failed(Exception):
    pass


def find_bindir():
    candidates = [os.environ.get("PG_BINDIR", "")]
    for name in ("/usr/local/bin/pg_ctl", shutil.which("pg_ctl") or "", shutil.which("initdb") or ""):
        if name and os.path.exists(name):
            candidates.append(os.path.dirname(os.path.realpath(name)))
    candidates.append("/usr/lib/postgresql/15/bin")
    for d in candidates:
        if d and all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return d
    raise Failed("no PostgreSQL binaries (initdb, pg_ctl, postgres) found; set PG_BINDIR")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A throwaway cluster in a temp dir, reachable only on a unix socket in that dir."""

    def __init__(self, root, settings, log=print):
        self.bindir = find_bindir()
        self.psql_bin = os.path.join(self.bindir, "psql") if os.access(os.path.join(self.bindir, "psql"), os.X_OK) else shutil.which("psql")
        if not self.psql_bin:
            raise Failed("no psql binary")
        self.root = root
        self.data = os.path.join(root, "data")
        self.sock = os.path.join(root, "sock")
        self.logfile = os.path.join(root, "postgres.log")
        self.port = free_port()
        self.settings = settings
        self.log = log
        self.started = False
        # initdb and the server refuse to run as root: run them as the postgres system user.
        self.as_user = []
        if os.geteuid() == 0:
            try:
                import pwd
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise Failed("running as root and there is no 'postgres' system user to run the server as")
            for path in (root,):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, argv, **kw):
        r = subprocess.run(self.as_user + argv, capture_output=True, text=True, **kw)
        if r.returncode != 0:
            raise Failed(f"{' '.join(argv[:2])} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
        return r

    def start(self):
        os.chmod(self.root, 0o700)
        self._run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--locale=C", "--no-instructions"])
        self._run(["mkdir", "-p", self.sock])
        opts = [f"-c port={self.port}", "-c listen_addresses=''", f"-c unix_socket_directories={self.sock}"]
        opts += [f"-c {k}={v}" for k, v in self.settings.items()]
        # Its own session: a Ctrl-C in the terminal reaches this script, which stops the server.
        self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.logfile, "-w", "-t", "60",
                   "-o", " ".join(opts), "start"], start_new_session=True)
        self.started = True

    def stop(self):
        if not self.started:
            return
        self.started = False
        r = subprocess.run(self.as_user + [os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "fast",
                                           "-w", "-t", "60", "stop"], capture_output=True, text=True)
        if r.returncode != 0:
            # Still running? Stop the postmaster we started, by the pid it recorded.
            try:
                with open(os.path.join(self.data, "postmaster.pid")) as f:
                    pid = int(f.readline())
                os.kill(pid, signal.SIGQUIT)
                time.sleep(1)
            except (OSError, ValueError):
                pass

    def start_hint(self):
        who = "runuser -u postgres -- " if self.as_user else ""
        return (f"{who}{self.bindir}/pg_ctl -D {self.data} -l {self.logfile} -o \"-c port={self.port} "
                f"-c listen_addresses='' -c unix_socket_directories={self.sock}\" start; "
                f"psql -h {self.sock} -p {self.port} -U postgres")

    def psql_argv(self):
        return [self.psql_bin, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                "-h", self.sock, "-p", str(self.port), "-U", "postgres", "-d", "postgres"]

    def psql(self, sql, check=True):
        """Runs a script in a new session; returns (status, stdout, stderr)."""
        r = subprocess.run(self.psql_argv(), input=sql, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise Failed(f"psql failed ({r.returncode}): {r.stderr.strip()}")
        return r.returncode, r.stdout, r.stderr

    def query(self, sql):
        return self.psql(sql)[1].strip()

    def session(self):
        return Session(self)


class Session:
    """One long-lived psql connection fed on stdin; each step ends with a marker echoed after it,
    read back from stdout (psql flushes its output after every command)."""

    def __init__(self, cluster):
        # stderr to a file: notices must never fill a pipe nobody reads while a batch runs.
        self.err = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self.proc = subprocess.Popen(cluster.psql_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, encoding="utf-8", bufsize=1 << 20)
        self.n = 0

    def stderr(self):
        self.err.seek(0)
        return self.err.read().strip()

    def run(self, script):
        """Sends a script and waits until psql has done it; returns its output lines."""
        self.n += 1
        marker = f"@@done {self.n}"
        try:
            self.proc.stdin.write(script)
            self.proc.stdin.write(f"\n\\echo '{marker}'\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise Failed(f"psql ended: {self.stderr()}")
        out = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                raise Failed(f"psql ended ({self.proc.returncode}): {self.stderr()}")
            line = line.rstrip("\n")
            if line == marker:
                return out
            out.append(line)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(kill=exc_type is not None)

    def close(self, kill=False):
        """Ends the session: at end of input when all went well, at once after an error or a
        Ctrl-C (an open transaction is then rolled back by the server)."""
        if self.proc.poll() is None:
            try:
                if kill:
                    self.proc.kill()
                else:
                    self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.err.close()


# ---- set-up, the timed month, the checks ----------------------------------------------------

def setup(cluster, people, log):
    """Schema, rules, enrollments (one event each), the budget funded with exactly the month."""
    cluster.psql(SCHEMA)
    with cluster.session() as s:
        s.run(SESSION)
        rules = ["BEGIN;",
                 f"INSERT INTO programs VALUES ({sql_literal(PROGRAM)}, 'Monthly social allowance (trợ cấp xã hội hằng tháng)', "
                 "'Decree 20/2021/NĐ-CP Art. 5-6');"]
        rules += [f"INSERT INTO program_categories VALUES ({sql_literal(PROGRAM)}, {sql_literal(c)}, {k});" for c, k in COEFFICIENTS.items()]
        rules += [f"INSERT INTO standard_levels VALUES ({sql_literal(PROGRAM)}, NULL, {sql_literal(f)}, {a}, {sql_literal(b)});" for f, a, b in LEVELS]
        events = [("program.defined", {"program_id": PROGRAM, "categories": COEFFICIENTS, "legal_basis": "Decree 20/2021/NĐ-CP Art. 5-6"})]
        events += [("standard_level.set", {"program_id": PROGRAM, "province": None, "effective_from": f, "amount": str(a), "legal_basis": b})
                   for f, a, b in LEVELS]
        rules.append("COPY new_events (n, type, payload) FROM STDIN;")
        rules += [f"{i}\t{t}\t{copy_field(json_text({'type': t, 'data': d}))}" for i, (t, d) in enumerate(events, 1)]
        rules += ["\\.", "SELECT append_events();", "COMMIT;"]
        s.run("\n".join(rules) + "\n")

        total = 0
        chunk = []
        enrolled = 0
        started = time.perf_counter()

        def flush():
            rows, evs = [], []
            for i, b in enumerate(chunk, 1):
                rows.append("\t".join(copy_field(v) for v in (
                    b["citizen_id"], b["full_name"], b["date_of_birth"], b["sex"], PROVINCE, PROGRAM, b["category"],
                    b["effective_from"], b["bin"], b["account_no"], b["holder_name"], b["attestation_ref"])))
                data = {"citizen_id": b["citizen_id"], "program_id": PROGRAM, "province": PROVINCE, "full_name": b["full_name"],
                        "date_of_birth": b["date_of_birth"], "sex": b["sex"], "category": b["category"],
                        "effective_from": b["effective_from"],
                        "account": {"bin": b["bin"], "account_no": b["account_no"], "holder_name": b["holder_name"]},
                        "attestation": {"provider": "VNeID", "level": 2, "reference": b["attestation_ref"],
                                        "verified_at": "2024-12-15T09:30:00+07:00"}}
                evs.append(f"{i}\tbeneficiary.enrolled\t{copy_field(json_text({'type': 'beneficiary.enrolled', 'data': data}))}")
            s.run("BEGIN;\nCOPY beneficiaries (citizen_id, full_name, date_of_birth, sex, province, program_id, category, "
                  "effective_from, bin, account_no, holder_name, attestation) FROM STDIN;\n" + "\n".join(rows) +
                  "\n\\.\nCOPY new_events (n, type, payload) FROM STDIN;\n" + "\n".join(evs) +
                  "\n\\.\nSELECT append_events();\nCOMMIT;\n")
            chunk.clear()

        lines = []
        for b in beneficiaries(people):
            chunk.append(b)
            amount = entitlement(b["category"])
            if b["effective_from"] <= PERIOD:  # active in the month: one payout line
                lines.append((b["citizen_id"], amount))
                total += amount
            if len(chunk) == 50_000:
                enrolled += len(chunk)
                flush()
                log(f"pg_peer: {enrolled} of {people} enrolled ({time.perf_counter() - started:.0f} s)")
        if chunk:
            flush()
        fund = {"province": PROVINCE, "program_id": PROGRAM, "period": PERIOD, "amount": str(total), "reference": "bench"}
        s.run("BEGIN;\n"
              f"INSERT INTO budgets (province, program_id, period, funded, balance) VALUES ('{PROVINCE}', '{PROGRAM}', '{PERIOD}', {total}, {total});\n"
              f"INSERT INTO ledger_postings (entry_ref, account, amount) VALUES ('fund-bench', 'treasury:{PROVINCE}:{PROGRAM}', {-total}), "
              f"('fund-bench', 'budget:{PROVINCE}:{PROGRAM}:{PERIOD}', {total});\n"
              "COPY new_events (n, type, payload) FROM STDIN;\n"
              f"1\tbudget.funded\t{copy_field(json_text({'type': 'budget.funded', 'data': fund}))}\n\\.\n"
              "SELECT append_events();\nCOMMIT;\n")
    cluster.psql("VACUUM ANALYZE;\nCHECKPOINT;\n")
    return lines, total


def batch_script(k, chunk):
    """One batch as the application sends it: one transaction, COPY, the procedure, COMMIT."""
    rows = "\n".join(f"{i}\t{cid}\t{amount}" for i, (cid, amount) in enumerate(chunk, 1))
    # ANALYZE: autovacuum never sees temp tables, and the planner should know it holds 10,000 lines.
    return (f"BEGIN;\nCOPY staging (line_no, citizen_id, amount) FROM STDIN;\n{rows}\n\\.\nANALYZE staging;\n"
            f"SELECT lines_total, instructed, rejected, paid, validate_ms, write_ms, events_ms FROM submit_payout_batch("
            f"'BENCH-{k:04}', 'bench-batch-{k}', '{PROGRAM}', '{PROVINCE}', '{PERIOD}');\nCOMMIT;\n")


def pay_month(cluster, lines):
    """The timed part: every batch, one transaction each, on one connection."""
    batches = [batch_script(k, lines[i:i + BATCH_LINES]) for k, i in enumerate(range(0, len(lines), BATCH_LINES))]
    with cluster.session() as s:
        s.run(SESSION + "SELECT 1;\n")  # connected, temp tables made: the application is up
        per_batch, stages = [], [0.0, 0.0, 0.0, 0.0]
        instructed = rejected = paid = 0
        started = time.perf_counter()
        for script in batches:
            t = time.perf_counter()
            out = s.run(script)
            per_batch.append(time.perf_counter() - t)
            row = out[-1].split("|")
            instructed += int(row[1])
            rejected += int(row[2])
            paid += int(row[3])
            for j in range(3):
                stages[j] += float(row[4 + j]) / 1000
            stages[3] += per_batch[-1] - sum(float(x) for x in row[4:7]) / 1000
        wall = time.perf_counter() - started
    return {"seconds": wall, "batches": len(batches), "instructed": instructed, "rejected": rejected, "paid": paid,
            "batch_seconds": per_batch, "stages": dict(zip(["validate", "write", "events", "copy_and_commit"], stages))}


def verify_chain(cluster):
    """Every event re-hashed in Python; returns (events, last hash hex) or raises Failed."""
    argv = cluster.psql_argv() + ["-c", "COPY (SELECT seq, encode(prev_hash, 'hex'), encode(hash, 'hex'), payload "
                                        "FROM events ORDER BY seq) TO STDOUT WITH (FORMAT csv)"]
    err = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
    prev, n, problem = GENESIS, 0, None
    for seq, prev_hex, hash_hex, payload in csv.reader(io.TextIOWrapper(proc.stdout, encoding="utf-8", newline="")):
        n += 1
        seq = int(seq)
        if problem:
            continue
        if seq != n:
            problem = f"seq {seq} where {n} was expected"
        elif bytes.fromhex(prev_hex) != prev:
            problem = f"seq {seq}: prev_hash is not the previous event's hash"
        else:
            h = hashlib.sha256(prev + seq.to_bytes(8, "big", signed=True) + payload.encode("utf-8")).digest()
            if h.hex() != hash_hex:
                problem = f"seq {seq}: hash does not match its prev_hash, seq and payload"
            prev = h
    status = proc.wait()
    err.seek(0)
    if status != 0:
        raise Failed(f"export of the events failed: {err.read().strip()}")
    if problem:
        raise Failed(problem)
    return n, prev.hex()


def checks(cluster, lines, funded, result):
    """Untimed: the month's money and chain, and a re-run refused. Returns {name: (ok, detail)}."""
    out = {}
    payouts, paid = map(int, cluster.query("SELECT count(*), coalesce(sum(amount), 0) FROM payouts").split("|"))
    out["payouts_equal_accepted"] = (payouts == result["instructed"] and result["instructed"] + result["rejected"] == len(lines),
                                     f"{payouts} payouts, {result['instructed']} lines accepted, {result['rejected']} rejected, {len(lines)} sent")
    total, entries_off = map(int, cluster.query(
        "SELECT coalesce(sum(amount), 0), (SELECT count(*) FROM (SELECT entry_ref FROM ledger_postings GROUP BY entry_ref "
        "HAVING sum(amount) <> 0 OR count(*) <> 2) x) FROM ledger_postings").split("|"))
    out["ledger_sums_to_zero"] = (total == 0 and entries_off == 0, f"sum {total}, {entries_off} entries not two balancing postings")
    b_funded, b_instructed, b_balance, b_ledger = map(int, cluster.query(
        f"SELECT funded, instructed, balance, (SELECT sum(amount) FROM ledger_postings WHERE account = 'budget:{PROVINCE}:{PROGRAM}:{PERIOD}') "
        f"FROM budgets WHERE province = '{PROVINCE}' AND program_id = '{PROGRAM}' AND period = '{PERIOD}'").split("|"))
    out["budget_is_funded_minus_paid"] = (b_funded == funded and b_instructed == paid and b_balance == funded - paid and b_ledger == b_balance,
                                          f"funded {b_funded} (expected {funded}), paid {paid}, balance {b_balance}, ledger account {b_ledger}")
    try:
        n, last = verify_chain(cluster)
        head_seq, head_hash = cluster.query("SELECT seq, encode(hash, 'hex') FROM chain_head").split("|")
        # program.defined, the standard levels, one per enrollment, budget.funded, then the month
        expected = 1 + len(LEVELS) + cluster.people + 1 + result["batches"] + len(lines)
        ok = int(head_seq) == n and head_hash == last and n == expected
        out["hash_chain_recomputed"] = (ok, f"all {n} events re-hashed in Python (expected {expected}); head seq {head_seq}")
    except Failed as e:
        out["hash_chain_recomputed"] = (False, str(e))

    # A re-run of batch 1 (lines 1..10,000), three ways; none may pay anything.
    first = lines[:BATCH_LINES]
    before = cluster.query("SELECT (SELECT count(*) FROM payouts), (SELECT balance FROM budgets), (SELECT seq FROM chain_head)")
    code, _, err = cluster.psql(SESSION + batch_script(0, first), check=False)
    same_id = code != 0 and "23505" in err and "payout_batches_pkey" in err
    again = SESSION + batch_script(0, first).replace("'BENCH-0000'", "'BENCH-0000-AGAIN'").replace("COMMIT;", "ROLLBACK;")
    code2, out2, err2 = cluster.psql(again, check=False)
    row = out2.strip().splitlines()[-1].split("|") if code2 == 0 and out2.strip() else []
    new_id = bool(row) and int(row[1]) == 0 and int(row[2]) == len(first)
    bypass = (SESSION + "BEGIN;\nCOPY staging (line_no, citizen_id, amount) FROM STDIN;\n" +
              "\n".join(f"{i}\t{c}\t{a}" for i, (c, a) in enumerate(first, 1)) + "\n\\.\n"
              "INSERT INTO payout_batches VALUES ('BENCH-0000-RAW', 'raw', 'social-allowance', '056', '2025-01', 0, 0, 0);\n"
              "INSERT INTO payouts (payout_id, batch_id, line_no, citizen_id, program_id, province, period, amount, bin, account_no, holder_name) "
              "SELECT 'BENCH-0000-RAW-' || line_no, 'BENCH-0000-RAW', line_no, s.citizen_id::char(12), b.program_id, b.province, '2025-01', "
              "s.amount::bigint, b.bin, b.account_no, b.holder_name FROM staging s JOIN beneficiaries b ON b.citizen_id = s.citizen_id::char(12);\n"
              "COMMIT;\n")
    code3, _, err3 = cluster.psql(bypass, check=False)
    raw = code3 != 0 and "23505" in err3 and "payouts_once" in err3
    after = cluster.query("SELECT (SELECT count(*) FROM payouts), (SELECT balance FROM budgets), (SELECT seq FROM chain_head)")
    out["rerun_refused"] = (same_id and new_id and raw and before == after,
                            f"same batch id refused by payout_batches_pkey: {same_id}; same lines as a new batch: "
                            f"{row[1] if row else '?'} paid, {row[2] if row else '?'} rejected (duplicate_payout): {new_id}; "
                            f"inserted past the validation, refused by payouts_once: {raw}; payouts, balance, head unchanged: {before == after}")
    return out


def server_settings(cluster):
    """The settings in force, read from pg_settings by a fresh session that SETs nothing."""
    names = ",".join(sql_literal(n) for n in REPORTED_SETTINGS)
    rows = cluster.query(f"SELECT name, setting, coalesce(unit, ''), source FROM pg_settings WHERE name IN ({names}) ORDER BY name")
    found = {}
    for line in rows.splitlines():
        name, setting, unit, source = line.split("|")
        found[name] = {"setting": setting, "unit": unit, "source": source, "shown": cluster.query(f"SHOW {name}")}
    return {n: found[n] for n in REPORTED_SETTINGS if n in found}


def run_round(args, settings, r, log):
    root = tempfile.mkdtemp(prefix=f"pg-peer-{r}-", dir=args.tmp)
    cluster = None
    try:
        cluster = Cluster(root, settings, log)
        cluster.people = args.lines
        load_before = os.getloadavg()
        t = time.perf_counter()
        cluster.start()
        lines, funded = setup(cluster, args.lines, log)
        setup_s = time.perf_counter() - t
        config = server_settings(cluster)
        log(f"pg_peer: round {r}: set-up done in {setup_s:.0f} s; paying {len(lines)} lines")
        counters = ("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
        wal0, ckpt0 = map(int, cluster.query(counters).split("|"))
        load_start = os.getloadavg()
        result = pay_month(cluster, lines)
        load_end = os.getloadavg()
        wal1, ckpt1 = map(int, cluster.query(counters).split("|"))
        result.update(lines=len(lines), lines_per_s=len(lines) / result["seconds"], setup_seconds=setup_s, settings=config,
                      load_before_setup=load_before[0], load_at_start=load_start[0], load_at_end=load_end[0],
                      wal_bytes_timed=wal1 - wal0, checkpoints_timed_part=ckpt1 - ckpt0,
                      db_bytes=int(cluster.query("SELECT pg_database_size('postgres')")),
                      payout_event_bytes_mean=float(cluster.query(
                          "SELECT avg(octet_length(payload)) FROM events WHERE type = 'payout.instructed'") or 0))
        log(f"pg_peer: round {r}: {result['lines_per_s']:,.0f} lines/s; checking")
        result["checks"] = {k: {"ok": ok, "detail": d} for k, (ok, d) in checks(cluster, lines, funded, result).items()}
        return result
    finally:
        if cluster:
            cluster.stop()
        if args.keep:
            log(f"pg_peer: kept {root}, stopped; to look inside: {cluster.start_hint() if cluster else '(no cluster)'}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=200_000, help="beneficiaries, one payout line each (default 200000)")
    p.add_argument("--rounds", type=int, default=1, help="fresh clusters, one after the other (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--keep", action="store_true", help="keep each round's cluster dir (stopped) for inspection")
    p.add_argument("--tmp", default=None, help="where the cluster dirs go (default: the system temp dir)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a server setting (repeatable)")
    args = p.parse_args()
    if args.lines < 1 or args.rounds < 1:
        p.error("--lines and --rounds must be at least 1")
    settings = dict(SERVER_SETTINGS)
    for kv in args.set:
        k, _, v = kv.partition("=")
        settings[k.strip()] = v.strip()

    interrupted = []

    def on_signal(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    # Ctrl-C (which also ends the psql children) and SIGTERM: stop the cluster, remove its dir.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    rounds = []
    try:
        for r in range(1, args.rounds + 1):
            rounds.append(run_round(args, settings, r, log))
    except KeyboardInterrupt:
        log("pg_peer: interrupted; cluster stopped and removed")
        return 130
    except Failed as e:
        if interrupted:
            log("pg_peer: interrupted; cluster stopped and removed")
            return 130
        log(f"pg_peer: FAILED: {e}")
        return 1

    ok = all(c["ok"] for r in rounds for c in r["checks"].values())
    rates = [r["lines_per_s"] for r in rounds]
    if args.json:
        print(json.dumps({"peer": "postgresql", "lines": args.lines, "batch_lines": BATCH_LINES, "rounds": [
            {k: v for k, v in r.items() if k != "batch_seconds"} | {
                "batch_seconds_p50": statistics.median(r["batch_seconds"]), "batch_seconds_max": max(r["batch_seconds"])}
            for r in rounds], "lines_per_s": {"min": min(rates), "median": statistics.median(rates), "max": max(rates)},
            "checks_ok": ok}))
    else:
        first = rounds[0]["settings"]
        print(f"pg_peer: PostgreSQL {first.get('server_version', {}).get('setting', '?')}, {args.lines} lines, "
              f"batches of {BATCH_LINES}, one transaction each")
        for i, r in enumerate(rounds, 1):
            st = r["stages"]
            print(f"round {i}: {r['lines_per_s']:,.0f} lines/s, {r['seconds']:.2f} s, {r['batches']} batches "
                  f"({r['instructed']} paid, {r['rejected']} rejected); batch p50 {statistics.median(r['batch_seconds']):.3f} s, "
                  f"max {max(r['batch_seconds']):.3f} s; validate {st['validate']:.2f} s, payouts+budget+ledger {st['write']:.2f} s, "
                  f"events+chain {st['events']:.2f} s, copy+commit+client {st['copy_and_commit']:.2f} s; "
                  f"set-up {r['setup_seconds']:.0f} s; payout event {r['payout_event_bytes_mean']:.0f} bytes; "
                  f"WAL {r['wal_bytes_timed'] / 1e6:.0f} MB, "
                  f"{r['checkpoints_timed_part']} checkpoints; "
                  f"load {r['load_at_start']:.2f} -> {r['load_at_end']:.2f}")
            for name, c in r["checks"].items():
                print(f"  check {name}: {'ok' if c['ok'] else 'FAILED'} ({c['detail']})")
        print("settings in force (pg_settings, fresh session): " + ", ".join(
            f"{n}={v['shown']} ({v['source']})" for n, v in first.items() if n != "server_version"))
        if len(rounds) > 1:
            print(f"lines/s over {len(rounds)} rounds: min {min(rates):,.0f}, median {statistics.median(rates):,.0f}, max {max(rates):,.0f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
