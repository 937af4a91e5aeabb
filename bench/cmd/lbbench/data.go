package main

import (
	"fmt"
	"strings"
)

// memoWords is the fixed vocabulary the transactions.memo column draws from.
// A fixed list (rather than random bytes) gives the memo text the redundancy of
// real payment references, so compression ratios are not flattered or punished
// by synthetic noise.
const memoWords = `
account advance agreement airline allowance annual apartment april assurance august
balance bank bill bonus booking branch broker budget business cafe cancellation
canteen capital card cargo cash catering charge charity cheque child cinema
claim cleaning client clinic coffee commission company consulting contract correction
coupon course credit currency customer daily damage debit december delivery
dental deposit design dinner discount dividend docking donation electricity energy
equipment estate exchange expense export fee ferry festival fine fitness
florist food freight fuel fund furniture garage garden gift grocery
gym hardware health hire holiday hospital hotel house import income
instalment insurance interest internet invoice january july june kindergarten kiosk
laundry lease legal library licence loan lunch maintenance march market
may medical membership mobile monthly mortgage museum music net network
november october office online order overdraft parking partner payment payroll
pension pharmacy phone plumbing postage premium print purchase quarterly railway
receipt refund registration reimbursement rent repair reservation restaurant retail reversal
royalty salary sale salon savings school security september service settlement
share shipping shop software spa sports standing statement stock storage
subscription supermarket supplier support tax taxi telecom theatre ticket tips
toll tour training transfer transport travel tuition utility vacation vendor
veterinary voucher wage warehouse water weekly wholesale wine workshop yearly
`

// vocabulary returns memoWords as a slice.
func vocabulary() []string { return strings.Fields(memoWords) }

// sqlQuote returns s as a single-quoted SQL string literal.
func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// vocabularyArrayLiteral renders the vocabulary as a SQL text[] expression.
func vocabularyArrayLiteral() string {
	words := vocabulary()
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = sqlQuote(w)
	}
	return "ARRAY[" + strings.Join(quoted, ",") + "]::text[]"
}

const createTransactionsSQL = `
DROP TABLE IF EXISTS transactions;
CREATE TABLE transactions (
    id           bigserial,
    uuid         uuid NOT NULL DEFAULT gen_random_uuid(),
    account_iban text NOT NULL,
    amount       numeric(12,2) NOT NULL,
    currency     char(3) NOT NULL,
    booked_at    timestamptz NOT NULL,
    memo         text NOT NULL
);`

// insertTransactionsSQL returns one batch of n generated rows. The LATERAL
// subqueries reference the outer row so PostgreSQL evaluates them per row;
// without that, random() in an uncorrelated subquery runs once per statement.
func insertTransactionsSQL(n int64) string {
	return fmt.Sprintf(`
INSERT INTO transactions (account_iban, amount, currency, booked_at, memo)
SELECT 'NO' || lpad(floor(random() * 100)::int::text, 2, '0')
            || lpad(floor(random() * 1e11)::bigint::text, 11, '0'),
       round((random() * 20000 - 10000)::numeric, 2),
       (ARRAY['NOK','NOK','NOK','EUR','USD','SEK','DKK','GBP'])[1 + floor(random() * 8)::int],
       timestamptz '2024-01-01 00:00:00+00' + random() * interval '365 days',
       m.memo
FROM generate_series(1, %d) AS g
CROSS JOIN LATERAL (SELECT 3 + floor(random() * 10)::int AS words, g AS row_no) AS k
CROSS JOIN LATERAL (
    SELECT string_agg(v.vocab[1 + floor(random() * array_length(v.vocab, 1))::int], ' ') AS memo
    FROM (SELECT %s AS vocab) AS v, generate_series(1, k.words) AS w
    WHERE k.row_no IS NOT NULL
) AS m;`, n, vocabularyArrayLiteral())
}

// indexTransactionsSQL builds the indexes after the load, which is several
// times faster than maintaining them row by row.
const indexTransactionsSQL = `
ALTER TABLE transactions ADD PRIMARY KEY (id);
CREATE INDEX transactions_uuid_idx ON transactions (uuid);
CREATE INDEX transactions_booked_at_idx ON transactions (booked_at);`

// batches splits total rows into batches of at most size rows.
func batches(total, size int64) []int64 {
	var out []int64
	for total > 0 {
		n := min(size, total)
		out = append(out, n)
		total -= n
	}
	return out
}
