package fleet

// migrateLockKey is the advisory lock migrations run under ("lbmigrat").
// Leadership uses a key of its own.
const migrateLockKey int64 = 0x6c626d6967726174

// migrations[i] brings the schema from version i to i+1. Append only: a
// released migration is never edited. Every table is keyed by host.
var migrations = []string{
	`CREATE TABLE hosts (
		host        TEXT        PRIMARY KEY,
		first_seen  timestamptz NOT NULL,
		last_seen   timestamptz NOT NULL,
		-- the last outbox record shipped, and the outbox it counts in
		shipped_seq BIGINT      NOT NULL DEFAULT 0,
		outbox      TEXT        NOT NULL DEFAULT '',
		shipped_at  timestamptz,
		version     TEXT        NOT NULL DEFAULT ''
	);
	-- runs, verifies and audit events are keyed by the outbox (the local
	-- catalog) that numbered them too: a host whose state_dir is made anew
	-- numbers from 1 again, and must not overwrite its own history.
	CREATE TABLE runs (
		host         TEXT        NOT NULL,
		outbox       TEXT        NOT NULL,
		id           BIGINT      NOT NULL,
		asset        TEXT        NOT NULL,
		kind         TEXT        NOT NULL,
		trigger      TEXT        NOT NULL,
		slot         timestamptz,
		started      timestamptz NOT NULL,
		ended        timestamptz,
		result       TEXT        NOT NULL,
		error        TEXT        NOT NULL DEFAULT '',
		snapshot     TEXT        NOT NULL DEFAULT '',
		bytes        BIGINT      NOT NULL DEFAULT 0,
		bytes_stored BIGINT      NOT NULL DEFAULT 0,
		output       TEXT        NOT NULL DEFAULT '',
		hook_output  TEXT        NOT NULL DEFAULT '',
		PRIMARY KEY (host, outbox, id)
	);
	CREATE INDEX runs_started ON runs (started DESC, id DESC);
	CREATE INDEX runs_asset_started ON runs (asset, started DESC);
	CREATE TABLE drills (
		host    TEXT        NOT NULL,
		id      TEXT        NOT NULL,
		asset   TEXT        NOT NULL,
		started timestamptz NOT NULL,
		passed  BOOLEAN     NOT NULL,
		report  TEXT        NOT NULL,
		PRIMARY KEY (host, id)
	);
	CREATE INDEX drills_asset_started ON drills (asset, started DESC);
	CREATE TABLE verifies (
		host       TEXT        NOT NULL,
		outbox     TEXT        NOT NULL,
		id         BIGINT      NOT NULL,
		repository TEXT        NOT NULL,
		started    timestamptz NOT NULL,
		ended      timestamptz NOT NULL,
		ok         BOOLEAN     NOT NULL,
		error      TEXT        NOT NULL DEFAULT '',
		objects    BIGINT      NOT NULL DEFAULT 0,
		PRIMARY KEY (host, outbox, id)
	);
	CREATE INDEX verifies_repository_started ON verifies (host, repository, started DESC);
	CREATE TABLE audit_events (
		host  TEXT        NOT NULL,
		chain TEXT        NOT NULL,
		seq   BIGINT      NOT NULL,
		time  timestamptz NOT NULL,
		body  BYTEA       NOT NULL,
		hash  BYTEA       NOT NULL,
		PRIMARY KEY (host, chain, seq)
	);
	CREATE TABLE assets (
		host               TEXT        NOT NULL,
		name               TEXT        NOT NULL,
		kind               TEXT        NOT NULL,
		tier               TEXT        NOT NULL DEFAULT '',
		last_backup        timestamptz,
		rpo_seconds        DOUBLE PRECISION,
		rpo_target_seconds DOUBLE PRECISION,
		state              TEXT        NOT NULL,
		detail             JSONB       NOT NULL DEFAULT '{}',
		updated            timestamptz NOT NULL,
		PRIMARY KEY (host, name)
	);`,
	// 2: alerts (leader.go, duties_alerts.go). One row per episode of a
	// problem, raised by its host's agent (source = the host) or by the
	// leader's fleet check (source = 'fleet'); at most one open per key.
	// alert_sends is one row per message to one destination, claimed
	// before it is sent, so a message goes out once across leaders.
	`CREATE TABLE alerts (
		id         TEXT        PRIMARY KEY,
		key        TEXT        NOT NULL,
		source     TEXT        NOT NULL,
		host       TEXT        NOT NULL,
		asset      TEXT        NOT NULL DEFAULT '',
		check_name TEXT        NOT NULL,
		subject    TEXT        NOT NULL DEFAULT '',
		severity   TEXT        NOT NULL DEFAULT '',
		state      TEXT        NOT NULL,
		message    TEXT        NOT NULL,
		created    timestamptz NOT NULL,
		resolved   timestamptz,
		sent_at    timestamptz,
		sent_by    TEXT
	);
	CREATE UNIQUE INDEX alerts_open_key ON alerts (key) WHERE state = 'open';
	CREATE INDEX alerts_undone ON alerts (state) WHERE state <> 'closed';
	CREATE TABLE alert_sends (
		alert_id    TEXT        NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
		destination TEXT        NOT NULL,
		action      TEXT        NOT NULL,
		repeat      INTEGER     NOT NULL,
		claimed_at  timestamptz NOT NULL,
		claimed_by  TEXT        NOT NULL,
		sent_at     timestamptz,
		PRIMARY KEY (alert_id, destination, action, repeat)
	);`,
}
