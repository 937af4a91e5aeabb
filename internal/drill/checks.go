package drill

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// checkTimeout bounds one validation query.
const checkTimeout = 10 * time.Minute

// queries runs the policy's validation queries against the target.
// database maps a check's database ("" for the default) to the one to use.
func (d *drill) Queries(ctx context.Context, database func(string) string, q asset.Querier) {
	for _, ck := range d.o.Checks {
		start := time.Now()
		db := database(ck.Database)
		c := evidence.Check{Name: ck.Name, Type: evidence.CheckQuery, Expect: ck.Expect.String(), Database: db}
		qctx, cancel := context.WithTimeout(ctx, checkTimeout)
		v, null, err := q.QueryValue(qctx, db, ck.SQL)
		cancel()
		c.Seconds = round3(time.Since(start).Seconds())
		switch {
		case err != nil:
			c.Detail = "query failed: " + oneLine(err.Error())
		case null:
			c.Got = "NULL"
			c.Detail = "returned NULL, expected " + c.Expect
		default:
			c.Got = v
			c.Passed, c.Detail = d.expect(ck, v)
		}
		d.addCheck(c)
	}
}

// expect judges a value against a check's expectation.
func (d *drill) expect(ck policy.ValidationQuery, v string) (bool, string) {
	e := ck.Expect
	switch e.Kind {
	case policy.ExpectTrue:
		if isTrue(v) {
			return true, ""
		}
		return false, fmt.Sprintf("returned %s, expected true", quoteShort(v))
	case policy.ExpectAtLeast:
		n, ok := new(big.Float).SetString(strings.TrimSpace(v))
		if !ok {
			return false, fmt.Sprintf("returned %s, not a number", quoteShort(v))
		}
		if n.Cmp(new(big.Float).SetInt64(e.Min)) < 0 {
			return false, fmt.Sprintf("returned %s, expected at least %d", v, e.Min)
		}
		return true, ""
	case policy.ExpectEqual:
		if v == e.Value {
			return true, ""
		}
		return false, fmt.Sprintf("returned %s, expected %s", quoteShort(v), quoteShort(e.Value))
	case policy.ExpectRecorded:
		want, ok := d.recorded.Checks[ck.Name]
		if why, failed := d.recorded.CheckErrors[ck.Name]; !ok && failed {
			return false, "no value was recorded at backup time: " + oneLine(why)
		}
		if !ok {
			return false, "the snapshot holds no value recorded at backup time for this check (was the check added after the backup?)"
		}
		if v == want {
			return true, ""
		}
		return false, fmt.Sprintf("returned %s, the backup recorded %s", quoteShort(v), quoteShort(want))
	}
	return false, fmt.Sprintf("unknown expectation %q", e.Kind)
}

func isTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "t", "true", "1":
		return true
	}
	return false
}

func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Sprintf("%q", s)
}
