package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	day  = 24 * time.Hour
	week = 7 * day
)

// Duration is a time.Duration written the way operators write recovery
// objectives: Go's syntax ("90s", "1h30m") plus whole days and weeks
// ("7d", "2w", "1d12h").
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d in the largest whole unit that fits ("2w", "90d", "36h",
// "1h30m"), in a form ParseDuration reads back.
func (d Duration) String() string {
	v := time.Duration(d)
	switch {
	case v == 0:
		return "0s"
	case v%week == 0:
		return strconv.FormatInt(int64(v/week), 10) + "w"
	case v%day == 0:
		return strconv.FormatInt(int64(v/day), 10) + "d"
	}
	s := v.String()
	// time.Duration prints "1h0m0s"; drop the zero tail.
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// UnmarshalYAML reads a duration scalar.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a duration must be a single value such as 5m or 7d", n.Line)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses Go duration syntax extended with whole days ("d")
// and weeks ("w"), which may be combined with the other units: "7d",
// "2w", "1w3d", "1d12h", "36h", "5m".
func ParseDuration(s string) (time.Duration, error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid duration %q: %s", s, why)
	}
	const units = `use a number and a unit: ns, us, ms, s, m, h, d (days) or w (weeks), e.g. 90s, 36h, 7d`
	rest := s
	neg := false
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	if rest == "0" {
		return 0, nil
	}
	if rest == "" {
		return 0, bad(units)
	}
	var total int64
	var goSyntax strings.Builder // the parts time.ParseDuration understands
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		num := rest[:i]
		j := i
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		unit := rest[i:j]
		rest = rest[j:]
		if num == "" {
			return 0, bad(units)
		}
		var per int64
		switch unit {
		case "d":
			per = int64(day)
		case "w":
			per = int64(week)
		case "":
			return 0, bad("missing unit; " + units)
		default:
			goSyntax.WriteString(num + unit)
			continue
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, bad("days and weeks must be whole numbers")
		}
		if n > (math.MaxInt64-total)/per {
			return 0, bad("too long")
		}
		total += n * per
	}
	if goSyntax.Len() > 0 {
		v, err := time.ParseDuration(goSyntax.String())
		if err != nil {
			if strings.Contains(err.Error(), "unknown unit") {
				return 0, bad(units)
			}
			return 0, bad("malformed number or too long")
		}
		if int64(v) > math.MaxInt64-total {
			return 0, bad("too long")
		}
		total += int64(v)
	}
	if neg {
		total = -total
	}
	return time.Duration(total), nil
}
