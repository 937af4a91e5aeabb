package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// databaseInfo is written as the marker of a complete build and reused.
type databaseInfo struct {
	Rows          int64     `json:"rows"`
	DatabaseBytes int64     `json:"database_bytes"` // pg_database_size('transactions') after the build
	TableBytes    int64     `json:"table_bytes"`    // heap only
	BuildSeconds  float64   `json:"build_seconds"`
	BuiltAt       time.Time `json:"built_at"`
	PGVersion     string    `json:"pg_version"`
}

const markerName = "database.json"

// memoVocabulary gives memo text the redundancy of real payment
// references, so compression is neither flattered nor punished by noise.
const memoVocabulary = `account advance airline allowance annual apartment balance bank bill bonus booking broker
budget business cafe cancellation capital card cargo cash catering charge cheque cinema claim cleaning client
clinic coffee commission consulting contract correction coupon course credit customer daily damage debit
delivery dental deposit design dinner discount dividend donation electricity energy equipment exchange expense
fee ferry fine fitness food freight fuel fund furniture garage gift grocery gym hardware health hire holiday
hospital hotel import income instalment insurance interest internet invoice laundry lease legal loan lunch
maintenance market medical membership mobile monthly mortgage museum network office online order overdraft
parking payment payroll pension pharmacy phone postage premium purchase quarterly railway receipt refund rent
repair reservation restaurant retail royalty salary sale savings school security service settlement shipping
shop software statement stock storage subscription supplier support tax taxi ticket toll tour transfer
transport travel tuition utility vendor voucher wage warehouse water weekly wholesale workshop yearly`

func vocabularySQL() string {
	words := strings.Fields(memoVocabulary)
	for i, w := range words {
		words[i] = "'" + w + "'"
	}
	return "ARRAY[" + strings.Join(words, ",") + "]"
}

const createSQL = `
CREATE TABLE transactions (
    id           bigserial PRIMARY KEY,
    uuid         uuid NOT NULL DEFAULT gen_random_uuid(),
    account_iban text NOT NULL,
    amount       numeric(12,2) NOT NULL,
    currency     char(3) NOT NULL,
    booked_at    timestamptz NOT NULL,
    memo         text NOT NULL
);`

// rowsSQL inserts n generated rows booked from day on. The LATERAL
// subquery refers to the outer row, so random() runs per row.
func rowsSQL(n int64, day string) string {
	return fmt.Sprintf(`
INSERT INTO transactions (account_iban, amount, currency, booked_at, memo)
SELECT 'NO' || lpad(floor(random() * 100)::int::text, 2, '0') || lpad(floor(random() * 1e11)::bigint::text, 11, '0'),
       round((random() * 20000 - 10000)::numeric, 2),
       (ARRAY['NOK','NOK','NOK','EUR','USD','SEK','DKK','GBP'])[1 + floor(random() * 8)::int],
       timestamptz %s + random() * interval '1 day' + g * interval '10 ms',
       m.memo
FROM generate_series(1, %d) AS g
CROSS JOIN LATERAL (
    SELECT string_agg(v[1 + floor(random() * array_length(v, 1))::int], ' ') AS memo
    FROM (SELECT %s AS v) AS voc, generate_series(1, 3 + (g %% 10)) AS w
) AS m;`, quote(day), n, vocabularySQL())
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ensureDatabase starts the cluster of a complete earlier build, or builds
// it: initdb, the transactions table, indexes, VACUUM ANALYZE, and a copy
// of the database, pristine, each mode starts from (resetDatabase).
func (b *bench) ensureDatabase(ctx context.Context) (databaseInfo, error) {
	var info databaseInfo
	marker := filepath.Join(b.cfg.root, markerName)
	if raw, err := os.ReadFile(marker); err == nil && !b.cfg.rebuild {
		if err := json.Unmarshal(raw, &info); err != nil {
			return info, fmt.Errorf("%s: %w", marker, err)
		}
		if info.Rows != b.cfg.rows {
			return info, fmt.Errorf("the database in %s has %d rows, not -rows %d: pass the same or -rebuild", b.cfg.root, info.Rows, b.cfg.rows)
		}
		if err := b.start(ctx); err != nil {
			return info, err
		}
		return info, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return info, err
	}
	start := time.Now()
	b.pgctl(ctx, "stop", "-m", "immediate") // an earlier, unfinished build
	os.Remove(marker)
	if err := os.RemoveAll(b.data); err != nil {
		return info, err
	}
	if err := b.mkdir(b.sock); err != nil {
		return info, err
	}
	if _, _, err := b.cmd(ctx, "", b.tool("initdb"), "-D", b.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"); err != nil {
		return info, err
	}
	conf := fmt.Sprintf("\n# lbdump\nlisten_addresses = ''\nunix_socket_directories = '%s'\nport = %d\nshared_buffers = 512MB\nmax_wal_size = 4GB\ncheckpoint_timeout = 15min\nmaintenance_work_mem = 512MB\n",
		b.sock, b.port)
	f, err := os.OpenFile(filepath.Join(b.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return info, err
	}
	_, werr := f.WriteString(conf)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return info, werr
	}
	if err := b.start(ctx); err != nil {
		return info, err
	}
	if _, err := b.psql(ctx, "postgres", "CREATE DATABASE transactions"); err != nil {
		return info, err
	}
	if _, err := b.psql(ctx, "transactions", createSQL); err != nil {
		return info, err
	}
	const batch = 500_000
	for loaded := int64(0); loaded < b.cfg.rows; loaded += batch {
		n := min(batch, b.cfg.rows-loaded)
		day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(loaded/10_000)).Format(time.RFC3339)
		fmt.Fprintf(b.log, "lbdump: loading rows %d..%d\n", loaded+1, loaded+n)
		if _, err := b.psql(ctx, "transactions", rowsSQL(n, day)); err != nil {
			return info, err
		}
	}
	if _, err := b.psql(ctx, "transactions", `CREATE INDEX transactions_booked_at_idx ON transactions (booked_at);
CREATE INDEX transactions_uuid_idx ON transactions (uuid);
VACUUM ANALYZE transactions; CHECKPOINT;`); err != nil {
		return info, err
	}
	if _, err := b.psql(ctx, "postgres", "CREATE DATABASE pristine TEMPLATE transactions STRATEGY FILE_COPY"); err != nil {
		return info, err
	}
	out, err := b.psql(ctx, "transactions", "SELECT pg_database_size('transactions'), pg_relation_size('transactions'), current_setting('server_version')")
	if err != nil {
		return info, err
	}
	parts := strings.Split(out, "|")
	if len(parts) != 3 {
		return info, fmt.Errorf("unexpected size query output %q", out)
	}
	info.DatabaseBytes, _ = strconv.ParseInt(parts[0], 10, 64)
	info.TableBytes, _ = strconv.ParseInt(parts[1], 10, 64)
	info.PGVersion = parts[2]
	info.Rows = b.cfg.rows
	info.BuildSeconds = time.Since(start).Seconds()
	info.BuiltAt = time.Now().UTC()
	raw, _ := json.MarshalIndent(info, "", "  ")
	return info, os.WriteFile(marker, raw, 0o644)
}

func (b *bench) start(ctx context.Context) error {
	if err := b.mkdir(b.sock); err != nil {
		return err
	}
	if b.pgctl(ctx, "status") == nil {
		return nil
	}
	return b.pgctl(ctx, "start", "-l", filepath.Join(b.cfg.root, "server.log"))
}

// resetDatabase makes transactions a copy of pristine again, file by file,
// so that every mode dumps the same rows in the same physical order.
func (b *bench) resetDatabase(ctx context.Context) error {
	_, err := b.psql(ctx, "postgres", `DROP DATABASE IF EXISTS transactions;
CREATE DATABASE transactions TEMPLATE pristine STRATEGY FILE_COPY;
CHECKPOINT;`)
	return err
}
