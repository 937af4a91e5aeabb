package scheduler

import (
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

func TestPrevSlot(t *testing.T) {
	oslo, err := time.LoadLocation("Europe/Oslo")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		spec string
		at   time.Time
		want time.Time
	}{
		{"CRON_TZ=Europe/Oslo 0 4 1 * *", time.Date(2026, 11, 23, 12, 0, 0, 0, oslo), time.Date(2026, 11, 1, 4, 0, 0, 0, oslo)},
		{"CRON_TZ=Europe/Oslo 0 4 1 * *", time.Date(2026, 11, 1, 4, 0, 0, 0, oslo), time.Date(2026, 11, 1, 4, 0, 0, 0, oslo)},
		{"CRON_TZ=UTC */5 * * * *", time.Date(2026, 11, 23, 12, 7, 0, 0, time.UTC), time.Date(2026, 11, 23, 12, 5, 0, 0, time.UTC)},
		{"CRON_TZ=UTC 30 3 * * 0", time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), time.Date(2026, 11, 22, 3, 30, 0, 0, time.UTC)},
		{"CRON_TZ=UTC 0 0 1 1 *", time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		s, err := cron.ParseStandard(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := PrevSlot(s, c.at)
		if !ok || !got.Equal(c.want) {
			t.Errorf("PrevSlot(%q, %v) = %v, %v; want %v", c.spec, c.at, got, ok, c.want)
		}
	}
}
