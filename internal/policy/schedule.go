package policy

import (
	"fmt"
	"strings"

	"github.com/robfig/cron/v3"
)

// ParseSchedule reads an asset's schedule: a five-field cron expression or
// a descriptor (@daily, @every 1h), optionally after CRON_TZ=<IANA zone>,
// in which the fields are read (UTC otherwise).
func ParseSchedule(spec string) (cron.Schedule, error) {
	s := strings.TrimSpace(spec)
	if !strings.HasPrefix(s, "CRON_TZ=") && !strings.HasPrefix(s, "TZ=") {
		s = "CRON_TZ=UTC " + s
	}
	sched, err := cron.ParseStandard(s)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %v (write five fields, minute hour day-of-month month day-of-week, e.g. \"CRON_TZ=Asia/Singapore 30 3 * * *\")", spec, err)
	}
	return sched, nil
}
