package report

import (
	"testing"
	"time"
)

func TestSeconds(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{0, "0s"}, {0.4, "0s"}, {0.5, "1s"}, {1.35, "1s"}, {59.6, "1m 0s"}, {252.4, "4m 12s"},
		{3600, "1h 0m 0s"}, {3723.6, "1h 2m 4s"}, {86400 + 3600 + 1, "1d 1h 0m 1s"}, {-3, "-3s"},
	} {
		if got := seconds(c.in); got != c.want {
			t.Errorf("seconds(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSizes(t *testing.T) {
	for _, c := range []struct {
		in   int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1_500_000, "1.4 MiB"}, {20_000_000_000, "18.6 GiB"}, {3e15, "2.7 PiB"}} {
		if got := bytesText(c.in); got != c.want {
			t.Errorf("bytesText(%d) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := rateText(52_345_678); got != "49.9 MiB/s" {
		t.Errorf("rateText = %q", got)
	}
	if got := phaseSeconds(20.15); got != "20.1 s" && got != "20.2 s" {
		t.Errorf("phaseSeconds = %q", got)
	}
	if got := timeText(time.Date(2026, 9, 30, 19, 19, 47, 800e6, time.UTC)); got != "2026-09-30 19:19:48 UTC" {
		t.Errorf("timeText rounds to %q", got)
	}
	oslo := time.FixedZone("CET", 3600)
	if got := timeText(time.Date(2026, 11, 1, 4, 0, 0, 0, oslo)); got != "2026-11-01 03:00:00 UTC" {
		t.Errorf("timeText of a zoned time = %q", got)
	}
}

func TestFrequency(t *testing.T) {
	for _, c := range []struct {
		in, want string
		words    bool
	}{
		{"", "manual only", true},
		{"CRON_TZ=Europe/Oslo 0 4 1 * *", "monthly on the 1st at 04:00 Europe/Oslo", true},
		{"0 3 * * 0", "weekly on Sunday at 03:00 UTC", true},
		{"0 3 * * 7", "weekly on Sunday at 03:00 UTC", true},
		{"CRON_TZ=Asia/Singapore 30 3 * * *", "daily at 03:30 Asia/Singapore", true},
		{"15 2 * * MON", "weekly on Monday at 02:15 UTC", true},
		{"CRON_TZ=Europe/Oslo 5 7 * * 1-5", "Monday to Friday at 07:05 Europe/Oslo", true},
		{"0 4 2 */3 *", "quarterly (January, April, July, October) on the 2nd at 04:00 UTC", true},
		{"0 4 3 */2 *", "every 2 months from January on the 3rd at 04:00 UTC", true},
		{"0 4 1 1,4,7,10 *", "on the 1st of January, April, July and October at 04:00 UTC", true},
		{"0 0 11 6 *", "yearly on 11 June at 00:00 UTC", true},
		{"0 0 22 JUN *", "yearly on 22 June at 00:00 UTC", true},
		{"45 * * * *", "hourly at :45", true},
		{"@monthly", "monthly on the 1st at 00:00 UTC", true},
		{"CRON_TZ=Europe/Oslo @weekly", "weekly on Sunday at 00:00 Europe/Oslo", true},
		{"@every 6h", "every 6h", true},
		{"0 5 1-7 * 1", "0 5 1-7 * 1", false},
		{"*/15 * * * *", "*/15 * * * *", false},
		{"0 4,16 * * *", "0 4,16 * * *", false},
		{"0 4 1 * 1", "0 4 1 * 1", false},
		{"0 4 31 13 *", "0 4 31 13 *", false},
	} {
		got, words := frequency(c.in)
		if got != c.want || words != c.words {
			t.Errorf("frequency(%q) = %q, %v; want %q, %v", c.in, got, words, c.want, c.words)
		}
	}
}

func TestOrdinal(t *testing.T) {
	for n, want := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 22: "22nd", 23: "23rd", 31: "31st"} {
		if got := ordinal(n); got != want {
			t.Errorf("ordinal(%d) = %q", n, got)
		}
	}
}
